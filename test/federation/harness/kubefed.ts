/**
 * KubeFed on the host apiserver: its CRDs and the FederatedTypeConfigs for namespaces, configmaps and
 * deployments from the release's own chart files, a KubeFedConfig with a short health-check period (so
 * "offline" is seen in seconds, not a minute), and its controller-manager as a process.
 *
 * Also the Kubernetes controllers a member needs for Deployments to have a status (kube-controller-manager
 * with only the deployment and replicaset controllers, and kube-scheduler binding pods to kwok nodes).
 */
import { readFileSync } from 'node:fs'
import { parseAllDocuments } from 'yaml'
import { probeFreePorts, startProcess, type ApiServer, type ManagedProcess } from '../../e2e/harness/index.ts'
import type { FederationBinaries } from './binaries.ts'

/** KubeFed's namespace in these tests (its default). */
export const KUBEFED_NS = 'kube-federation-system'

/** The health check KubeFed is configured with: a member is offline after about period × threshold + timeout. */
export const HEALTH_CHECK = { periodSeconds: 2, timeoutSeconds: 3, failureThreshold: 2 }

/** Types KubeFed federates in these tests (FederatedTypeConfig names). */
const TYPES = new Set(['namespaces', 'configmaps', 'deployments.apps'])

/** Apply KubeFed's CRDs, KubeFedConfig and FederatedTypeConfigs to `host`. */
export async function installKubeFed (host: ApiServer, bin: FederationBinaries): Promise<void> {
  // The CRDs are larger than the last-applied annotation allows: server-side apply.
  await host.kubectl(['apply', '--server-side', '-f', bin.kubefed.coreCrds, '-f', bin.kubefed.typesCrds])
  await host.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all'])
  await host.kubectl(['create', 'namespace', KUBEFED_NS])
  const config = {
    apiVersion: 'core.kubefed.io/v1beta1',
    kind: 'KubeFedConfig',
    metadata: { name: 'kubefed', namespace: KUBEFED_NS },
    spec: {
      // A KubeFedConfig that exists is validated as a whole (no defaulting): every field is required.
      scope: 'Cluster',
      controllerDuration: { availableDelay: '5s', unavailableDelay: '10s', cacheSyncTimeout: '60s' },
      leaderElect: { resourceLock: 'configmaps', leaseDuration: '15s', renewDeadline: '10s', retryPeriod: '2s' },
      clusterHealthCheck: {
        period: `${HEALTH_CHECK.periodSeconds}s`,
        timeout: `${HEALTH_CHECK.timeoutSeconds}s`,
        failureThreshold: HEALTH_CHECK.failureThreshold,
        successThreshold: 1
      },
      syncController: { adoptResources: 'Enabled', maxConcurrentReconciles: 2 },
      statusController: { maxConcurrentReconciles: 2 },
      featureGates: [
        { name: 'PushReconciler', configuration: 'Enabled' },
        { name: 'SchedulerPreferences', configuration: 'Enabled' },
        { name: 'RawResourceStatusCollection', configuration: 'Enabled' }
      ]
    }
  }
  const ftcs = parseAllDocuments(readFileSync(bin.kubefed.typeConfigs, 'utf8'))
    .map((d) => d.toJS() as { kind?: string, metadata?: { name?: string, namespace?: string } } | null)
    .filter((o) => o?.kind === 'FederatedTypeConfig' && TYPES.has(o.metadata?.name ?? ''))
    .map((o) => ({ ...o, metadata: { ...o!.metadata, namespace: KUBEFED_NS } }))
  if (ftcs.length !== TYPES.size) throw new Error(`expected ${TYPES.size} FederatedTypeConfigs in ${bin.kubefed.typeConfigs}, found ${ftcs.length}`)
  await host.kubectl(['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [config, ...ftcs] }) })
}

/** Start KubeFed's controller-manager against `host` (admin credentials). */
export async function startKubeFed (host: ApiServer, bin: FederationBinaries, opts: { logDir: string, log?: (line: string) => void }): Promise<ManagedProcess> {
  const [healthz, metrics] = await probeFreePorts(2, '127.0.0.1')
  const proc = startProcess('kubefed-controller-manager', bin.kubefed.controllerManager, [
    `--kubeconfig=${host.adminKubeconfigPath}`, `--kubefed-namespace=${KUBEFED_NS}`,
    `--healthz-addr=127.0.0.1:${healthz}`, `--metrics-addr=127.0.0.1:${metrics}`, '-v=2'
  ], { logDir: opts.logDir, log: opts.log })
  // Logged once the KubeFedConfig was read and the controllers are being started.
  await proc.waitForLine(/Starting (cluster controller|KubeFed|federatedtypeconfig)/i, 120_000)
  return proc
}

/**
 * kube-controller-manager (deployment + replicaset controllers only) and kube-scheduler for `server`,
 * in its network namespace when it has one.
 */
export async function startKubeControllers (server: ApiServer, bin: FederationBinaries, opts: { logDir: string, log?: (line: string) => void }): Promise<ManagedProcess[]> {
  const common = { netns: server.netns, logDir: opts.logDir, log: opts.log }
  const kcm = startProcess(`kube-controller-manager[${server.name}]`, bin.kube.controllerManager, [
    `--kubeconfig=${server.adminKubeconfigPath}`, '--controllers=deployment-controller,replicaset-controller',
    '--leader-elect=false', '--secure-port=0', '--use-service-account-credentials=false'
  ], common)
  const sched = startProcess(`kube-scheduler[${server.name}]`, bin.kube.scheduler, [
    `--kubeconfig=${server.adminKubeconfigPath}`, '--leader-elect=false', '--secure-port=0'
  ], common)
  await Promise.all([
    kcm.waitForLine(/Started controller|Starting controller|"Started"/, 120_000),
    sched.waitForLine(/Serving securely|Starting Kubernetes Scheduler|Successfully acquired|leaderelection/i, 120_000)
  ])
  return [kcm, sched]
}
