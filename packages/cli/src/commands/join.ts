/**
 * `tower join kubefed|karmada <name>`: what `kubefedctl join` and
 * `karmadactl join` do, but pointed at the tunnel. Tower issues a caller
 * token for the cluster and writes, into the federation control plane, a
 * cluster object whose endpoint is the cluster's Tower port and whose CA is
 * Tower's, plus the Secret holding that token (see
 * packages/controller/src/federation). Running it again replaces the token
 * and revokes the one it replaced; `--leave` removes both objects and
 * revokes the token they held.
 *
 * For the file registry (the state directory); with `--registry
 * kubernetes` the reconciler does the same from `--join-kubefed`.
 */
import type { Argv } from 'yargs'
import { outputOption, stateDirOption } from '../options.ts'
import type { JoinArgs, Target } from './join-run.ts'

// The federation code and @kubernetes/client-node load only when a join runs
// (join-run.ts): imported here, every tower command would carry them (about
// 88 MiB of RSS measured, most of an idle tower server's).
async function run (a: JoinArgs): Promise<void> {
  const { runJoin } = await import('./join-run.ts')
  await runJoin(a)
}

/** Registers the command group. */
export function joinCommand (y: Argv): Argv {
  const common = <T>(c: Argv<T>, target: Target) => c
    .positional('name', { type: 'string', demandOption: true, describe: 'Cluster name (registered with "tower cluster add", proxy mode)' })
    .option('user', { type: 'string', default: `tower-${target}`, describe: `Identity of the caller token the controller uses; with --impersonate clusters the member's RBAC sees it (TOWER_USER)` })
    .option('group', { type: 'string', array: true, default: [] as string[], describe: 'Group of that identity; repeatable (TOWER_GROUP)' })
    .option('server-host', { type: 'string', describe: 'Host the apiEndpoint names [default: the server\'s --advertise-host] (TOWER_SERVER_HOST)' })
    .option('leave', { type: 'boolean', default: false, describe: 'Remove the cluster object and its Secret instead, and revoke the token they held (TOWER_LEAVE)' })
  return y.command('join', 'Join a cluster to a federation control plane (KubeFed, Karmada) through the tunnel', (c) => c
    .option('state-dir', stateDirOption)
    .option('output', outputOption)
    .command('kubefed <name>', 'Create or update the KubeFedCluster <name> and its token Secret in the host cluster', (k) => common(k, 'kubefed')
      .option('kubeconfig', { type: 'string', demandOption: true, describe: 'Kubeconfig of the host cluster where KubeFed runs (TOWER_KUBECONFIG)' })
      .option('kubefed-namespace', { type: 'string', describe: 'KubeFed\'s namespace [default: kube-federation-system] (TOWER_KUBEFED_NAMESPACE)' }),
    (argv) => run({
      target: 'kubefed',
      name: argv.name,
      stateDir: argv['state-dir'],
      kubeconfig: argv.kubeconfig,
      namespace: argv['kubefed-namespace'],
      user: argv.user,
      groups: argv.group.map(String),
      serverHost: argv['server-host'],
      leave: argv.leave,
      output: argv.output
    }))
    .command('karmada <name>', 'Create or update the push-mode Karmada Cluster <name> and its Secret (token, caBundle)', (k) => common(k, 'karmada')
      .option('karmada-kubeconfig', { type: 'string', demandOption: true, describe: 'Kubeconfig of the Karmada apiserver (TOWER_KARMADA_KUBECONFIG)' })
      .option('secret-namespace', { type: 'string', describe: 'Namespace of the credential Secret in Karmada [default: karmada-cluster] (TOWER_SECRET_NAMESPACE)' }),
    (argv) => run({
      target: 'karmada',
      name: argv.name,
      stateDir: argv['state-dir'],
      kubeconfig: argv['karmada-kubeconfig'],
      namespace: argv['secret-namespace'],
      user: argv.user,
      groups: argv.group.map(String),
      serverHost: argv['server-host'],
      leave: argv.leave,
      output: argv.output
    }))
    .demandCommand(1, 'name a target: tower join kubefed <name> | tower join karmada <name>'),
  () => undefined)
}
