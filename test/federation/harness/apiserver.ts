/**
 * More kube-apiservers than the e2e control plane starts: member B (reached directly, no tunnel) and the
 * Karmada apiserver (a stock kube-apiserver with the aggregation flags, so the aggregated apiserver's
 * `cluster.karmada.io` can be served through an APIService). Same binary, same certificate scheme
 * (a CA per cluster, admin = O=system:masters) as test/e2e/harness/control-plane.ts; they share the
 * e2e etcd under their own prefix. Optionally kwok as the cluster's kubelet, so Deployments get nodes.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  createCa, kubectl, kubectlOk, probeFreePorts, startProcess, waitFor, withPortRetry, writeKubeconfig,
  type ApiServer, type Binaries, type EtcdServer, type KubectlOptions, type KubectlResult, type ManagedProcess
} from '../../e2e/harness/index.ts'
import { writeKwokConfig } from '../../e2e/harness/kwok.ts'
import { serviceAccountKeys } from '../../e2e/harness/pki.ts'

/** A client certificate the Karmada apiserver presents to aggregated apiservers (front proxy). */
export interface FrontProxy {
  /** CA that signs the front-proxy client cert: aggregated apiservers trust it for X-Remote-User. */
  caPem: string
  caFile: string
}

/** An apiserver started here: an ApiServer plus what the aggregation setup needs. */
export interface ExtraApiServer extends ApiServer {
  /** Present when started with `aggregation`. */
  frontProxy?: FrontProxy
  /** File holding the CA (for --client-ca-file of components that authenticate against it). */
  caFile: string
}

/** Options of {@link startApiServer}. */
export interface StartApiServerOptions {
  name: string
  etcd: EtcdServer
  bin: Binaries
  dir: string
  logDir: string
  log?: (line: string) => void
  /** Add the front-proxy (aggregation) flags. */
  aggregation?: boolean
  /** Start timeout in ms (default 120 000). */
  timeoutMs?: number
}

/** Starts a kube-apiserver on 127.0.0.1 (host network). */
export async function startApiServer (opts: StartApiServerOptions): Promise<ExtraApiServer> {
  const dir = join(opts.dir, opts.name)
  mkdirSync(dir, { recursive: true })
  const ca = createCa(`tower-fed-${opts.name}-ca`)
  const serving = ca.serving('kube-apiserver', ['127.0.0.1', 'localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', '10.0.0.1'])
  const admin = ca.client('tower-e2e-admin', ['system:masters'])
  const sa = serviceAccountKeys()
  const file = (n: string, content: string): string => {
    const p = join(dir, n)
    writeFileSync(p, content, { mode: 0o600 })
    return p
  }
  const caFile = file('ca.crt', ca.certPem)
  const extra: string[] = []
  let frontProxy: FrontProxy | undefined
  if (opts.aggregation === true) {
    const fpCa = createCa(`tower-fed-${opts.name}-front-proxy-ca`)
    const fpClient = fpCa.client('front-proxy-client')
    const fpCaFile = file('front-proxy-ca.crt', fpCa.certPem)
    frontProxy = { caPem: fpCa.certPem, caFile: fpCaFile }
    extra.push(`--requestheader-client-ca-file=${fpCaFile}`, '--requestheader-allowed-names=front-proxy-client',
      '--requestheader-username-headers=X-Remote-User', '--requestheader-group-headers=X-Remote-Group',
      '--requestheader-extra-headers-prefix=X-Remote-Extra-',
      `--proxy-client-cert-file=${file('front-proxy-client.crt', fpClient.certPem)}`,
      `--proxy-client-key-file=${file('front-proxy-client.key', fpClient.keyPem)}`)
  }
  const tlsCert = file('apiserver.crt', serving.certPem)
  const tlsKey = file('apiserver.key', serving.keyPem)
  const saPub = file('sa.pub', sa.publicPem)
  const saKey = file('sa.key', sa.privatePem)
  const timeoutMs = opts.timeoutMs ?? 120_000
  return await withPortRetry(`kube-apiserver[${opts.name}]`, async () => {
    const [port] = await probeFreePorts(1, '127.0.0.1')
    const url = `https://127.0.0.1:${port}`
    const adminKubeconfigPath = writeKubeconfig(join(dir, 'admin.kubeconfig'), {
      server: url, caPem: ca.certPem, name: `tower-fed-${opts.name}`, certPem: admin.certPem, keyPem: admin.keyPem
    })
    const proc: ManagedProcess = startProcess(`kube-apiserver[${opts.name}]`, opts.bin.kubeApiserver, [
      `--etcd-servers=${opts.etcd.url}`, `--etcd-prefix=/tower-fed/${opts.name}`,
      '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${port}`,
      `--tls-cert-file=${tlsCert}`, `--tls-private-key-file=${tlsKey}`, `--client-ca-file=${caFile}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      `--service-account-issuer=${url}`, `--service-account-key-file=${saPub}`, `--service-account-signing-key-file=${saKey}`,
      '--authorization-mode=Node,RBAC', '--disable-admission-plugins=ServiceAccount', '--allow-privileged=true',
      '--kubelet-preferred-address-types=InternalIP', '--profiling=false', ...extra
    ], { logDir: opts.logDir, log: opts.log })
    const run = (args: string[], o: KubectlOptions = {}): Promise<KubectlResult> => kubectl(adminKubeconfigPath, args, o)
    try {
      await waitFor(`kube-apiserver[${opts.name}] /readyz`, async () => {
        const r = await run(['get', '--raw=/readyz'], { timeoutMs: 10_000 })
        return r.code === 0 && r.stdout.trim() === 'ok' ? true : undefined
      }, { timeoutMs, intervalMs: 500, proc })
    } catch (err) {
      await proc.stop()
      throw err
    }
    const version = (JSON.parse(await kubectlOk(adminKubeconfigPath, ['get', '--raw=/version'])) as { gitVersion: string }).gitVersion
    const users = new Map<string, string>()
    const server: ExtraApiServer = {
      name: opts.name,
      url,
      port,
      caPem: ca.certPem,
      caKeyPem: ca.keyPem,
      caFile,
      frontProxy,
      adminCertPem: admin.certPem,
      adminKeyPem: admin.keyPem,
      adminKubeconfigPath,
      serviceAccountIssuer: url,
      version,
      process: proc,
      clientCert: (user, groups = []) => ca.client(user, groups),
      kubeconfig (user, groups = []) {
        const key = JSON.stringify([user, groups])
        let path = users.get(key)
        if (path === undefined) {
          const c = ca.client(user, groups)
          path = writeKubeconfig(join(dir, `user-${users.size}.kubeconfig`), { server: url, caPem: ca.certPem, name: `tower-fed-${opts.name}-${users.size}`, certPem: c.certPem, keyPem: c.keyPem })
          users.set(key, path)
        }
        return path
      },
      kubectl: (args, o = {}) => kubectlOk(adminKubeconfigPath, args, o),
      kubectlResult: run
    }
    return server
  }, 3, opts.log)
}

/** Starts kwok against `server` (the fake kubelet of nodes annotated kwok.x-k8s.io/node=fake). */
export async function startKwokFor (server: ApiServer, opts: { bin: Binaries, dir: string, logDir: string, log?: (line: string) => void }): Promise<ManagedProcess> {
  const dir = join(opts.dir, `kwok-${server.name}`)
  mkdirSync(join(dir, 'work'), { recursive: true })
  writeFileSync(join(dir, 'pod.log'), '')
  const configPath = writeKwokConfig(join(dir, 'kwok.yaml'), {
    stagesDir: opts.bin.kwokStages,
    streaming: { workDir: join(dir, 'work'), logsFile: join(dir, 'pod.log') }
  })
  return await withPortRetry(`kwok[${server.name}]`, async () => {
    const [port] = await probeFreePorts(1, '127.0.0.1', server.netns)
    const proc = startProcess(`kwok[${server.name}]`, opts.bin.kwok, [
      `--config=${configPath}`, `--kubeconfig=${server.adminKubeconfigPath}`,
      '--manage-all-nodes=false', '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
      '--node-ip=127.0.0.1', `--node-port=${port}`, `--server-address=127.0.0.1:${port}`
    ], { netns: server.netns, env: { HOME: dir }, logDir: opts.logDir, log: opts.log })
    try {
      await proc.waitForLine(/Starting HTTP server/, 120_000)
    } catch (err) {
      await proc.stop()
      throw err
    }
    return proc
  }, 3, opts.log)
}

/**
 * A kwok-managed Ready node: kube-scheduler binds the Deployments' pods to it, kwok makes them Running,
 * and KubeFed's and Karmada's health checks (which list nodes) see a real node.
 */
export async function addFakeNode (server: ApiServer, name: string): Promise<void> {
  const node = {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', type: 'kwok', 'topology.kubernetes.io/zone': `zone-${server.name}`, 'topology.kubernetes.io/region': 'tower-e2e' }
    },
    spec: { taints: [{ key: 'kwok.x-k8s.io/node', value: 'fake', effect: 'NoSchedule' }] }
  }
  await server.kubectl(['apply', '-f', '-'], { input: JSON.stringify(node) })
  await server.kubectl(['wait', '--for=condition=Ready', '--timeout=60s', `node/${name}`])
  // The TaintNodesByCondition admission adds not-ready:NoSchedule at creation; kube-controller-manager's
  // node-lifecycle controller removes it once the node is Ready. We run only the deployment and replicaset
  // controllers (node-lifecycle would also evict on a missed kwok heartbeat), so do its one step here.
  await server.kubectlResult(['taint', 'node', name, 'node.kubernetes.io/not-ready:NoSchedule-'])
}
