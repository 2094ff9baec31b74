/**
 * A Karmada v1.18 control plane from its release binaries, without Kubernetes under it:
 *
 *  - karmada-apiserver: the stock kube-apiserver with the front-proxy (aggregation) flags, on the e2e etcd;
 *  - karmada-aggregated-apiserver: serves cluster.karmada.io (Cluster) through an APIService. An
 *    APIService names a Service; Endpoints may not point at loopback, but the aggregator resolves a Service
 *    of type ExternalName to `externalName:port` directly (that is also how Karmada's own manifests do it),
 *    so ExternalName `localhost` + the APIService port reaches the process on 127.0.0.1. The serving cert
 *    carries the Service's DNS name, which the aggregator verifies against the APIService's caBundle;
 *  - karmada-webhook: the release's webhook configuration with every URL rewritten to 127.0.0.1:PORT
 *    (URL webhooks may be loopback). Its mutating webhook stamps the permanent-id labels the detector
 *    claims objects by, so it is not optional;
 *  - karmada-controller-manager and karmada-scheduler, with short health periods;
 *  - kube-controller-manager (namespace and garbage-collector controllers), as Karmada's own install has.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  createCa, probeFreePorts, startProcess, waitFor, type Binaries, type EtcdServer, type ManagedProcess
} from '../../e2e/harness/index.ts'
import { startApiServer, type ExtraApiServer } from './apiserver.ts'
import type { FederationBinaries } from './binaries.ts'

/** The running Karmada control plane. */
export interface Karmada {
  apiserver: ExtraApiServer
  procs: ManagedProcess[]
  /** Cluster health: a member is unhealthy after this many ms of failed probes. */
  failureThresholdMs: number
  stop: () => Promise<void>
}

const AGG_SERVICE = 'karmada-aggregated-apiserver'
const SYSTEM_NS = 'karmada-system'

/** Start everything and wait until `kubectl get clusters.cluster.karmada.io` answers. */
export async function startKarmada (opts: {
  etcd: EtcdServer
  bin: Binaries
  fed: FederationBinaries
  dir: string
  logDir: string
  log?: (line: string) => void
}): Promise<Karmada> {
  const procs: ManagedProcess[] = []
  const stop = async (): Promise<void> => {
    for (const p of [...procs].reverse()) await p.stop()
  }
  const common = { logDir: opts.logDir, log: opts.log }
  const dir = join(opts.dir, 'karmada')
  mkdirSync(dir, { recursive: true })
  const file = (n: string, content: string): string => {
    const p = join(dir, n)
    writeFileSync(p, content, { mode: 0o600 })
    return p
  }
  try {
    const api = await startApiServer({ name: 'karmada', etcd: opts.etcd, bin: opts.bin, dir: opts.dir, logDir: opts.logDir, log: opts.log, aggregation: true })
    procs.push(api.process)
    const kc = api.adminKubeconfigPath
    await api.kubectl(['apply', '--server-side', '-R', '-f', opts.fed.karmada.crds], { timeoutMs: 120_000 })
    await api.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all'])

    const ca = createCa('tower-fed-karmada-components-ca')
    const caB64 = Buffer.from(ca.certPem).toString('base64')
    const [aggPort, webhookPort, cmHealth, schedHealth, webhookHealth] = await probeFreePorts(5, '127.0.0.1')

    // The aggregated apiserver and its APIService.
    const aggCert = ca.serving(AGG_SERVICE, [`${AGG_SERVICE}.${SYSTEM_NS}.svc`, `${AGG_SERVICE}.${SYSTEM_NS}.svc.cluster.local`, 'localhost', '127.0.0.1'])
    const agg = startProcess('karmada-aggregated-apiserver', opts.fed.karmada.aggregatedApiserver, [
      `--kubeconfig=${kc}`, `--authentication-kubeconfig=${kc}`, `--authorization-kubeconfig=${kc}`,
      `--etcd-servers=${opts.etcd.url}`, '--etcd-prefix=/tower-fed/karmada-aggregated',
      `--tls-cert-file=${file('agg.crt', aggCert.certPem)}`, `--tls-private-key-file=${file('agg.key', aggCert.keyPem)}`,
      '--bind-address=127.0.0.1', `--secure-port=${aggPort}`, '--v=2'
    ], common)
    procs.push(agg)
    await api.kubectl(['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [
          { apiVersion: 'v1', kind: 'Namespace', metadata: { name: SYSTEM_NS } },
          { apiVersion: 'v1', kind: 'Service', metadata: { name: AGG_SERVICE, namespace: SYSTEM_NS }, spec: { type: 'ExternalName', externalName: 'localhost' } },
          {
            apiVersion: 'apiregistration.k8s.io/v1',
            kind: 'APIService',
            metadata: { name: 'v1alpha1.cluster.karmada.io' },
            spec: {
              caBundle: caB64, group: 'cluster.karmada.io', version: 'v1alpha1', groupPriorityMinimum: 2000, versionPriority: 10,
              service: { name: AGG_SERVICE, namespace: SYSTEM_NS, port: aggPort }
            }
          }
        ]
      })
    })
    await waitFor('cluster.karmada.io served through the APIService', async () => {
      const r = await api.kubectlResult(['get', 'clusters.cluster.karmada.io'], { timeoutMs: 10_000 })
      return r.code === 0 ? true : undefined
    }, { timeoutMs: 120_000, intervalMs: 1000, proc: agg })

    // The webhook, and its configuration pointed at 127.0.0.1.
    const certDir = join(dir, 'webhook-certs')
    mkdirSync(certDir)
    const whCert = ca.serving('karmada-webhook', ['127.0.0.1', 'localhost'])
    writeFileSync(join(certDir, 'tls.crt'), whCert.certPem)
    writeFileSync(join(certDir, 'tls.key'), whCert.keyPem, { mode: 0o600 })
    const webhook = startProcess('karmada-webhook', opts.fed.karmada.webhook, [
      `--kubeconfig=${kc}`, '--bind-address=127.0.0.1', `--secure-port=${webhookPort}`, `--cert-dir=${certDir}`,
      '--metrics-bind-address=0', `--health-probe-bind-address=127.0.0.1:${webhookHealth}`, '--v=2'
    ], common)
    procs.push(webhook)
    await webhook.waitForLine(/Serving webhook server|Starting webhook server|starting.*webhook/i, 120_000)
    const config = readFileSync(join(opts.fed.karmada.crds, '..', 'deploy', 'webhook-configuration.yaml'), 'utf8')
      .replaceAll('https://karmada-webhook.karmada-system.svc:443', `https://127.0.0.1:${webhookPort}`)
      .replaceAll('{{caBundle}}', caB64)
    await api.kubectl(['apply', '-f', '-'], { input: config })

    const failureThresholdMs = 6000
    const cm = startProcess('karmada-controller-manager', opts.fed.karmada.controllerManager, [
      `--kubeconfig=${kc}`, '--leader-elect=false', '--controllers=*',
      '--cluster-status-update-frequency=2s', '--cluster-monitor-period=2s', '--cluster-monitor-grace-period=10s',
      `--cluster-failure-threshold=${failureThresholdMs / 1000}s`, '--cluster-success-threshold=2s',
      '--metrics-bind-address=0', `--health-probe-bind-address=127.0.0.1:${cmHealth}`, '--v=2'
    ], common)
    procs.push(cm)
    const sched = startProcess('karmada-scheduler', opts.fed.karmada.scheduler, [
      `--kubeconfig=${kc}`, '--leader-elect=false', '--enable-scheduler-estimator=false',
      '--metrics-bind-address=0', `--health-probe-bind-address=127.0.0.1:${schedHealth}`, '--v=2'
    ], common)
    procs.push(sched)
    // Karmada's own deployment runs kube-controller-manager against its apiserver, for namespaces and
    // garbage collection: without it, deleting a Cluster waits forever on its execution namespace.
    const kcm = startProcess('kube-controller-manager[karmada]', opts.fed.kube.controllerManager, [
      `--kubeconfig=${kc}`, '--controllers=namespace-controller,garbage-collector-controller',
      '--leader-elect=false', '--secure-port=0', '--use-service-account-credentials=false'
    ], common)
    procs.push(kcm)
    return { apiserver: api, procs, failureThresholdMs, stop }
  } catch (err) {
    await stop()
    throw err
  }
}
