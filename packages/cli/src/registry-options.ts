/**
 * Which registry a command uses, from one set of flags shared by `tower
 * server`, `tower cluster …` and `tower kubeconfig`:
 *
 *   --registry file        the state directory (--state-dir), the default
 *   --registry kubernetes  Cluster resources and Secrets in a host cluster
 *                          (--kubeconfig, in-cluster config when absent;
 *                          --namespace, default tower-system)
 *
 * A flag of the other backend typed on the command line is a usage error
 * (TOWER_ERR_USAGE), so `--state-dir` is never silently ignored. The same
 * flags taken from TOWER_* variables are not: an image may set
 * TOWER_STATE_DIR for the file backend and still be run with
 * TOWER_REGISTRY=kubernetes, as deploy/controller/server.yaml does.
 *
 * @tower/controller (and with it @kubernetes/client-node, half a second to
 * load) is imported only when the kubernetes registry is chosen.
 */
import os from 'node:os'
import { hideBin } from 'yargs/helpers'
import type { Argv, Options } from 'yargs'
import { FileRegistry, type ClusterRegistry, type ServerSettings } from '@tower/server'
import type { ControllerSettings } from '@tower/controller'
import type { Logger } from 'pino'
import { createRootLogger } from './logger.ts'
import { givenOnCommandLine, parseDuration, stateDirOption, UsageError } from './options.ts'

/** The backends `--registry` names. */
export const REGISTRY_KINDS = ['file', 'kubernetes'] as const
/** One of {@link REGISTRY_KINDS}. */
export type RegistryChoice = typeof REGISTRY_KINDS[number]

/** `--registry`. */
export const registryOption = {
  type: 'string',
  choices: REGISTRY_KINDS,
  default: 'file',
  describe: 'Where clusters are kept: file (the --state-dir) or kubernetes (Cluster resources in the host cluster of --kubeconfig) (TOWER_REGISTRY)'
} satisfies Options

/** `--kubeconfig` (kubernetes registry only). */
export const kubeconfigOption = {
  type: 'string',
  describe: 'With --registry kubernetes: kubeconfig of the host cluster [default: the in-cluster ServiceAccount] (TOWER_KUBECONFIG)'
} satisfies Options

/** `--namespace` (kubernetes registry only). */
export const namespaceOption = {
  type: 'string',
  defaultDescription: 'tower-system',
  describe: 'With --registry kubernetes: namespace of Tower\'s Secrets, Services, ports ConfigMap and Lease (TOWER_NAMESPACE)'
} satisfies Options

/** Flags of `tower server` that only the kubernetes registry takes. */
export const controllerOptions = {
  'kubesphere-compat': { type: 'boolean', describe: 'With --registry kubernetes: also write the caller kubeconfig (base64) to spec.connection.kubeconfig, where KubeSphere\'s controller-manager reads it [default: false] (TOWER_KUBESPHERE_COMPAT)' },
  'leader-elect': { type: 'boolean', describe: 'With --registry kubernetes: take Lease <namespace>/tower-controller before allocating ports and writing status; --no-leader-elect for one replica [default: true] (TOWER_LEADER_ELECT)' },
  'lease-duration': { type: 'string', describe: 'With --registry kubernetes: how long a Lease holds without renewal, e.g. 15s [default: 15s] (TOWER_LEASE_DURATION)' },
  identity: { type: 'string', describe: 'With --registry kubernetes: this replica\'s name in the Lease [default: the host name, the pod name in Kubernetes] (TOWER_IDENTITY)' }
} satisfies Record<string, Options>

/** `tower cluster add --wait` (kubernetes registry only). */
export const waitOption = {
  type: 'string',
  describe: 'With --registry kubernetes: how long to wait for the controller to allocate the port, e.g. 30s; after it the port is printed as pending [default: 30s] (TOWER_WAIT)'
} satisfies Options

/** The kubernetes-only flag names, for the usage check. */
const KUBERNETES_FLAGS = ['kubeconfig', 'namespace', 'wait', ...Object.keys(controllerOptions)]
/** The file-only flag names. */
const FILE_FLAGS = ['state-dir']

/** What these flags parse into. */
export interface RegistryArgs {
  registry?: string
  'state-dir': string
  kubeconfig?: string
  namespace?: string
  'kubesphere-compat'?: boolean
  'leader-elect'?: boolean
  'lease-duration'?: string
  identity?: string
}

/** Adds --registry, --state-dir, --kubeconfig and --namespace to a command. */
export function withRegistryOptions<T> (y: Argv<T>): Argv<T & RegistryArgs> {
  return y
    .option('registry', registryOption)
    .option('state-dir', stateDirOption)
    .option('kubeconfig', kubeconfigOption)
    .option('namespace', namespaceOption) as unknown as Argv<T & RegistryArgs>
}

/** Adds the kubernetes-only flags of `tower server`. */
export function withControllerOptions<T> (y: Argv<T>): Argv<T & RegistryArgs> {
  let out = y as unknown as Argv<T & RegistryArgs>
  for (const [name, opt] of Object.entries(controllerOptions)) out = out.option(name, opt as Options) as unknown as Argv<T & RegistryArgs>
  return out
}

/** True when `--flag`, `--flag=…` or `--no-flag` is on the command line. */
function typed (flag: string, argv: string[]): boolean {
  return givenOnCommandLine(flag, argv) || givenOnCommandLine(`no-${flag}`, argv)
}

/**
 * The backend the flags choose; throws UsageError when a flag of the other
 * backend was typed on the command line (`argv`: the raw arguments).
 */
export function registryChoice (args: RegistryArgs, argv: string[] = hideBin(process.argv)): RegistryChoice {
  const choice = args.registry ?? 'file'
  if (choice !== 'file' && choice !== 'kubernetes') throw new UsageError(`--registry must be file or kubernetes, got "${String(choice)}"`)
  const wrong = choice === 'file' ? KUBERNETES_FLAGS : FILE_FLAGS
  for (const flag of wrong) {
    if (typed(flag, argv)) {
      throw new UsageError(choice === 'file'
        ? `--${flag} applies to --registry kubernetes only (this command uses the file registry, --state-dir)`
        : `--${flag} applies to --registry file only; with --registry kubernetes the host cluster is the registry`)
    }
  }
  return choice
}

/** The controller settings `tower server` passes to the kubernetes registry. */
export function controllerSettings (args: RegistryArgs & { 'port-range'?: string }): Partial<ControllerSettings> {
  const settings: Partial<ControllerSettings> = {
    kubesphereCompat: args['kubesphere-compat'] ?? false,
    leaderElect: args['leader-elect'] ?? true,
    identity: args.identity ?? os.hostname(),
    leaseDurationMs: parseDuration(args['lease-duration'] ?? '15s', '--lease-duration')
  }
  if (settings.leaseDurationMs! < 1000) throw new UsageError(`--lease-duration must be at least 1s, got "${args['lease-duration']}"`)
  if (args['port-range'] !== undefined) settings.portRange = args['port-range']
  if (settings.identity === '' || settings.identity!.length > 253) throw new UsageError('--identity must be 1-253 characters')
  return settings
}

/** Options of {@link openRegistry}. */
export interface OpenRegistryOptions {
  /** File registry: create the state directory when missing (only `server` and `cluster add`). */
  create?: boolean
  /** Server settings to store (file) or use (kubernetes): advertise host, SANs, port range, agent port. */
  server?: Partial<ServerSettings>
  /** Kubernetes registry: the controller's settings (`tower server` only). */
  controller?: Partial<ControllerSettings>
  /** Kubernetes registry: how long `add` waits for the port, milliseconds [default: 30,000]. */
  addTimeoutMs?: number
  logger?: Logger
}

/** Opens the registry the flags choose; the caller closes it. */
export async function openRegistry (args: RegistryArgs, opts: OpenRegistryOptions = {}): Promise<ClusterRegistry> {
  if (registryChoice(args) === 'file') {
    return await FileRegistry.open({ stateDir: args['state-dir'], create: opts.create ?? false, server: opts.server, logger: opts.logger })
  }
  const { KubernetesRegistry } = await import('@tower/controller')
  return await KubernetesRegistry.open({
    kubeconfig: args.kubeconfig,
    namespace: args.namespace,
    settings: opts.server,
    controller: opts.controller,
    ...(opts.addTimeoutMs !== undefined ? { addTimeoutMs: opts.addTimeoutMs } : {}),
    logger: opts.logger ?? commandLogger()
  })
}

/**
 * The logger a short command gives the kubernetes registry: errors only, as
 * JSON lines on stderr, so stdout keeps just the command's output (a
 * kubeconfig, a manifest) while a failing informer still says why.
 */
function commandLogger (): Logger {
  return createRootLogger('error', process.stderr)
}

/**
 * Opens the registry, runs `fn`, and closes the registry (its watches and
 * informers) whatever happens. For the short commands only: with the
 * kubernetes registry the process then exits once the command is done.
 * @kubernetes/client-node 2.0.1 makes a new undici dispatcher for every
 * request and never closes it, so idle keep-alive sockets to the apiserver
 * would hold the finished command for about 30 seconds (measured: `tower
 * cluster manifest` 32 s instead of 2 s). The timer is unref'd: it fires
 * only if something still holds the event loop, and by then every line of
 * output has been written (stdout and stderr are synchronous for files and
 * pipes).
 */
export async function withRegistry<T> (args: RegistryArgs, opts: OpenRegistryOptions, fn: (registry: ClusterRegistry) => Promise<T>): Promise<T> {
  const registry = await openRegistry(args, opts)
  try {
    return await fn(registry)
  } finally {
    await registry.close()
    if (registry.kind === 'kubernetes') setTimeout(() => process.exit(), 100).unref()
  }
}

/** Where the registry lives, for messages: the state directory, or the namespace of the host cluster. */
export function registryWhere (args: RegistryArgs): string {
  return registryChoice(args) === 'file' ? args['state-dir'] : `namespace ${args.namespace ?? namespaceOption.defaultDescription} of the host cluster`
}
