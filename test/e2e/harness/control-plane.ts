/**
 * A real Kubernetes control plane for the end-to-end tests: etcd, two kube-apiservers ("host", where the
 * Tower server runs, and "member", the cluster behind the tunnel) and, optionally, kwok as the member's
 * kubelet. Binaries come from test/e2e/tools/build.sh.
 *
 * Each apiserver has its own CA, serving cert, admin client cert (O=system:masters), service-account key
 * and etcd prefix, so the two behave as separate clusters. With `netns`, the member's etcd, apiserver and
 * kwok run inside that network namespace, bound to its loopback: the host cannot reach them at all, and
 * the harness itself talks to the member with `ip netns exec ... kubectl`.
 *
 * Everything started is stopped, and the temp dir removed, by stop(), by a failed start, and at process
 * exit or SIGINT at the latest (see processes.ts). Set TOWER_E2E_KEEP=1 to keep the temp dir (logs).
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { binaries, type Binaries } from './binaries.ts'
import { kubectl, kubectlOk, writeKubeconfig, type KubectlOptions, type KubectlResult } from './kubectl.ts'
import { writeKwokConfig, type KwokPortForward } from './kwok.ts'
import { createCa, serviceAccountKeys, type CertPair } from './pki.ts'
import { probeFreePorts, withPortRetry } from './ports.ts'
import { keepTempDirs, makeTempDir, removeTempDir, startProcess, waitFor, type ManagedProcess } from './processes.ts'

/** One etcd server. */
export interface EtcdServer {
  /** Client URL, e.g. http://127.0.0.1:PORT (inside `netns` when set). */
  url: string
  clientPort: number
  peerPort: number
  dataDir: string
  netns?: string
  process: ManagedProcess
}

/** One kube-apiserver and the credentials to use it. */
export interface ApiServer {
  /** 'host' or 'member'. */
  name: string
  /** https://127.0.0.1:PORT — inside `netns` when set. */
  url: string
  port: number
  /** Network namespace it runs in; undefined = the host's. */
  netns?: string
  /** CA of this cluster (signs the serving cert and client certs). */
  caPem: string
  caKeyPem: string
  /** Admin client cert (CN=tower-e2e-admin, O=system:masters) and its kubeconfig. */
  adminCertPem: string
  adminKeyPem: string
  adminKubeconfigPath: string
  /** --service-account-issuer (also the default token audience). */
  serviceAccountIssuer: string
  /** serverVersion.gitVersion as reported by /version, e.g. 'v1.36.3'. */
  version: string
  /** Issue a client cert (CN=user, O=groups) signed by this cluster's CA. */
  clientCert (user: string, groups?: string[]): CertPair
  /**
   * Write (once per user) a kubeconfig for `user` with client-cert auth and return its path. Its server is
   * `url`: with `netns` set, usable only inside that namespace.
   */
  kubeconfig (user: string, groups?: string[]): string
  /** Run kubectl as admin (in the right netns); throws with stderr on a non-zero exit; returns stdout. */
  kubectl (args: string[], opts?: KubectlOptions): Promise<string>
  /** Same, but returns the whole result and never throws for a non-zero exit. */
  kubectlResult (args: string[], opts?: KubectlOptions): Promise<KubectlResult>
  process: ManagedProcess
}

/** kwok, the member's fake kubelet. */
export interface KwokInstance {
  /** Port of kwok's kubelet server (HTTPS and HTTP on one port), on 127.0.0.1 (in the member's netns). */
  port: number
  /** The file `kubectl logs` / `attach` serve for every fake container: append lines to it. */
  logsFile: string
  /** Working directory of exec'ed commands. */
  workDir: string
  configPath: string
  process: ManagedProcess
}

/** The whole set. */
export interface ControlPlane {
  host: ApiServer
  member: ApiServer
  /** The etcd of the host apiserver (and of the member too, unless netns). */
  etcd: EtcdServer
  /** The member's etcd: the same object as `etcd` unless the member runs in a netns. */
  memberEtcd: EtcdServer
  /** Present when started with `kwok`. */
  kwok?: KwokInstance
  /** Temp dir holding certs, kubeconfigs, data and logs (logs/). */
  dir: string
  binaries: Binaries
  /** Stop every process (kwok, apiservers, etcd), then remove the temp dir. Idempotent. */
  stop (): Promise<void>
}

/** Options of {@link startControlPlane}. */
export interface ControlPlaneOptions {
  /** Run the member's etcd, apiserver and kwok inside this (existing) network namespace. */
  netns?: string
  /** Start kwok against the member; an object configures its port-forward rules. Default false. */
  kwok?: boolean | { portForwards?: KwokPortForward[] }
  /** Receives every output line of every process, and progress lines of the harness. */
  log?: (line: string) => void
  /** Per-component start timeout in ms (default 120 000: a cold apiserver on a busy 2-core box is slow). */
  timeoutMs?: number
}

interface Ctx { dir: string, logDir: string, bin: Binaries, log?: (line: string) => void, timeoutMs: number, procs: ManagedProcess[] }

async function startEtcd (ctx: Ctx, name: string, netns?: string): Promise<EtcdServer> {
  return await withPortRetry(`etcd[${name}]`, async () => {
    const [clientPort, peerPort] = await probeFreePorts(2, '127.0.0.1', netns)
    const dataDir = join(ctx.dir, `etcd-${name}`)
    const client = `http://127.0.0.1:${clientPort}`
    const peer = `http://127.0.0.1:${peerPort}`
    const proc = startProcess(`etcd[${name}]`, ctx.bin.etcd, [
      `--name=${name}`, `--data-dir=${dataDir}`,
      `--listen-client-urls=${client}`, `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`, `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=${name}=${peer}`,
      // Throwaway data: skip fsync, the slowest part of etcd on a shared disk.
      '--unsafe-no-fsync', '--log-level=info'
    ], { netns, logDir: ctx.logDir, log: ctx.log })
    ctx.procs.push(proc)
    try {
      // etcd's own "serving" event; it is logged after the client listener is up.
      await proc.waitForLine(/ready to serve client requests/, ctx.timeoutMs)
    } catch (err) {
      await proc.stop()
      throw err
    }
    return { url: client, clientPort, peerPort, dataDir, netns, process: proc }
  }, 3, ctx.log)
}

async function startApiServer (ctx: Ctx, name: string, etcd: EtcdServer, netns?: string): Promise<ApiServer> {
  const dir = join(ctx.dir, name)
  mkdirSync(dir, { recursive: true })
  const ca = createCa(`tower-e2e-${name}-ca`)
  const serving = ca.serving('kube-apiserver', ['127.0.0.1', 'localhost', 'kubernetes', 'kubernetes.default',
    'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local', '10.0.0.1'])
  const admin = ca.client('tower-e2e-admin', ['system:masters'])
  const sa = serviceAccountKeys()
  const file = (n: string, content: string): string => {
    const p = join(dir, n)
    writeFileSync(p, content, { mode: 0o600 })
    return p
  }
  const caFile = file('ca.crt', ca.certPem)
  const tlsCert = file('apiserver.crt', serving.certPem)
  const tlsKey = file('apiserver.key', serving.keyPem)
  const saPub = file('sa.pub', sa.publicPem)
  const saKey = file('sa.key', sa.privatePem)

  return await withPortRetry(`kube-apiserver[${name}]`, async () => {
    const [port] = await probeFreePorts(1, '127.0.0.1', netns)
    const url = `https://127.0.0.1:${port}`
    const issuer = url
    const adminKubeconfigPath = writeKubeconfig(join(dir, 'admin.kubeconfig'), {
      server: url, caPem: ca.certPem, name: `tower-e2e-${name}`, certPem: admin.certPem, keyPem: admin.keyPem
    })
    const proc = startProcess(`kube-apiserver[${name}]`, ctx.bin.kubeApiserver, [
      `--etcd-servers=${etcd.url}`, `--etcd-prefix=/tower-e2e/${name}`,
      '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${port}`,
      `--tls-cert-file=${tlsCert}`, `--tls-private-key-file=${tlsKey}`, `--client-ca-file=${caFile}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      `--service-account-issuer=${issuer}`, `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      '--authorization-mode=RBAC',
      // No controller-manager creates service accounts, so the admission plugin would reject every pod.
      '--disable-admission-plugins=ServiceAccount',
      '--allow-privileged=true',
      // kwok nodes report InternalIP 127.0.0.1 and a Hostname that does not resolve.
      '--kubelet-preferred-address-types=InternalIP',
      '--profiling=false'
    ], { netns, logDir: ctx.logDir, log: ctx.log })
    ctx.procs.push(proc)
    const run = (args: string[], opts: KubectlOptions = {}): Promise<KubectlResult> =>
      kubectl(adminKubeconfigPath, args, { netns, ...opts })
    let version: string
    try {
      await waitFor(`kube-apiserver[${name}] /readyz`, async () => {
        const r = await run(['get', '--raw=/readyz'], { timeoutMs: 10_000 })
        return r.code === 0 && r.stdout.trim() === 'ok' ? true : undefined
      }, { timeoutMs: ctx.timeoutMs, intervalMs: 500, proc })
      const v = JSON.parse(await kubectlOk(adminKubeconfigPath, ['get', '--raw=/version'], { netns })) as { gitVersion: string }
      version = v.gitVersion
    } catch (err) {
      await proc.stop()
      throw err
    }
    const users = new Map<string, string>()
    const server: ApiServer = {
      name,
      url,
      port,
      netns,
      caPem: ca.certPem,
      caKeyPem: ca.keyPem,
      adminCertPem: admin.certPem,
      adminKeyPem: admin.keyPem,
      adminKubeconfigPath,
      serviceAccountIssuer: issuer,
      version,
      process: proc,
      clientCert: (user, groups = []) => ca.client(user, groups),
      kubeconfig (user, groups = []) {
        const key = JSON.stringify([user, groups])
        let path = users.get(key)
        if (path === undefined) {
          const c = ca.client(user, groups)
          path = writeKubeconfig(join(dir, `user-${users.size}-${user.replace(/[^\w.-]+/g, '_')}.kubeconfig`), {
            server: url, caPem: ca.certPem, name: `tower-e2e-${name}-${user}`, certPem: c.certPem, keyPem: c.keyPem
          })
          users.set(key, path)
        }
        return path
      },
      kubectl: (args, opts = {}) => kubectlOk(adminKubeconfigPath, args, { netns, ...opts }),
      kubectlResult: run
    }
    return server
  }, 3, ctx.log)
}

async function startKwok (ctx: Ctx, member: ApiServer, opts: { portForwards?: KwokPortForward[] }): Promise<KwokInstance> {
  const dir = join(ctx.dir, 'kwok')
  const workDir = join(dir, 'work')
  mkdirSync(workDir, { recursive: true })
  const logsFile = join(dir, 'pod.log')
  writeFileSync(logsFile, '')
  const configPath = writeKwokConfig(join(dir, 'kwok.yaml'), {
    stagesDir: ctx.bin.kwokStages,
    streaming: { workDir, logsFile, portForwards: opts.portForwards }
  })
  return await withPortRetry('kwok', async () => {
    const [port] = await probeFreePorts(1, '127.0.0.1', member.netns)
    const proc = startProcess('kwok', ctx.bin.kwok, [
      `--config=${configPath}`, `--kubeconfig=${member.adminKubeconfigPath}`,
      '--manage-all-nodes=false', '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
      '--node-ip=127.0.0.1', `--node-port=${port}`, `--server-address=127.0.0.1:${port}`
      // HOME: kwok also loads ~/.kwok/kwok.yaml when it exists; keep a developer's file out of the tests.
    ], { netns: member.netns, env: { HOME: dir }, logDir: ctx.logDir, log: ctx.log })
    ctx.procs.push(proc)
    try {
      // kwok logs this after net.Listen succeeded: from here the kubelet port accepts connections.
      await proc.waitForLine(/Starting HTTP server/, ctx.timeoutMs)
    } catch (err) {
      await proc.stop()
      throw err
    }
    return { port, logsFile, workDir, configPath, process: proc }
  }, 3, ctx.log)
}

/**
 * Start etcd, the host and member apiservers (in parallel), and kwok if asked; resolve when all are ready.
 * @throws MissingBinariesError when test/e2e/tools/build.sh has not been run.
 */
export async function startControlPlane (opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const bin = binaries()
  const dir = makeTempDir('cp')
  const logDir = join(dir, 'logs')
  mkdirSync(logDir)
  const ctx: Ctx = { dir, logDir, bin, log: opts.log, timeoutMs: opts.timeoutMs ?? 120_000, procs: [] }
  let stopped: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      // Reverse start order: kwok, apiservers, then etcd, so nobody logs errors about a vanished peer.
      for (const p of [...ctx.procs].reverse()) await p.stop()
      if (keepTempDirs()) opts.log?.(`TOWER_E2E_KEEP: kept ${dir}`)
      removeTempDir(dir)
    })()
    return stopped
  }
  try {
    const started = Date.now()
    const etcd = await startEtcd(ctx, 'host')
    const memberEtcd = opts.netns === undefined ? etcd : await startEtcd(ctx, 'member', opts.netns)
    opts.log?.(`etcd ready after ${Date.now() - started} ms`)
    // allSettled, not all: on a failure the other start must have finished (its process recorded in
    // ctx.procs) before stop() runs, or it would outlive the control plane.
    const [hostR, memberR] = await Promise.allSettled([
      startApiServer(ctx, 'host', etcd),
      startApiServer(ctx, 'member', memberEtcd, opts.netns)
    ])
    if (hostR.status === 'rejected') throw hostR.reason
    if (memberR.status === 'rejected') throw memberR.reason
    const host = hostR.value
    const member = memberR.value
    opts.log?.(`kube-apiservers ${host.version} ready after ${Date.now() - started} ms`)
    let kwok: KwokInstance | undefined
    if (opts.kwok !== undefined && opts.kwok !== false) {
      kwok = await startKwok(ctx, member, opts.kwok === true ? {} : opts.kwok)
      opts.log?.(`kwok ready after ${Date.now() - started} ms`)
    }
    return { host, member, etcd, memberEtcd, kwok, dir, binaries: bin, stop }
  } catch (err) {
    await stop()
    throw err
  }
}
