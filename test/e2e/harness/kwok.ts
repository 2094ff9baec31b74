/**
 * kwok as the member cluster's kubelet: it makes fake nodes Ready, fake pods Running, and serves the
 * kubelet's exec / attach / logs / port-forward endpoints (with Kubernetes' own streaming code) so that
 * the kube-apiserver has a real node to proxy those calls to.
 *
 * What a streaming call does is configured by kwok's ClusterExec / ClusterLogs / ClusterAttach /
 * ClusterPortForward objects. We give them to kwok in its --config file, not as CRs: kwok sets no status
 * on these CRs, so a test could not tell when kwok has seen a CR it just created, while a config file is
 * read before kwok starts serving.
 */
import { appendFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ApiServer } from './control-plane.ts'

/** The annotation kwok is told to manage nodes by (kwok's own convention). */
export const KWOK_NODE_ANNOTATION = 'kwok.x-k8s.io/node'

/** One port-forward rule: connections to the pod's `port` go to `address:targetPort` as seen by kwok. */
export interface KwokPortForward { port: number, address: string, targetPort: number }

/** What the fake containers do for streaming calls. */
export interface KwokStreamingOptions {
  /** Working directory of `kubectl exec` commands (they run as local processes of kwok). */
  workDir: string
  /** File served by `kubectl logs` (followed for -f) and streamed by `kubectl attach`. */
  logsFile: string
  /**
   * Port-forward rules. Every other port is an echo: kwok pipes the stream through `cat`, which needs no
   * listener and works inside a network namespace as well.
   */
  portForwards?: KwokPortForward[]
}

/**
 * kwok config documents (multi-document YAML; JSON documents are YAML) that make every pod's containers
 * run `kubectl exec` commands locally, serve `logsFile` for logs and attach, and forward ports as given.
 */
export function configureKwokStreaming (opts: KwokStreamingOptions): string {
  const meta = (name: string): { name: string } => ({ name })
  const forwards: object[] = (opts.portForwards ?? []).map((f) => ({
    ports: [f.port],
    target: { port: f.targetPort, address: f.address }
  }))
  forwards.push({ command: ['cat'] }) // no `ports`: the default for all other ports
  const docs = [
    { apiVersion: 'kwok.x-k8s.io/v1alpha1', kind: 'ClusterExec', metadata: meta('tower-e2e-exec'), spec: { execs: [{ local: { workDir: opts.workDir } }] } },
    { apiVersion: 'kwok.x-k8s.io/v1alpha1', kind: 'ClusterLogs', metadata: meta('tower-e2e-logs'), spec: { logs: [{ logsFile: opts.logsFile, follow: true }] } },
    { apiVersion: 'kwok.x-k8s.io/v1alpha1', kind: 'ClusterAttach', metadata: meta('tower-e2e-attach'), spec: { attaches: [{ logsFile: opts.logsFile }] } },
    { apiVersion: 'kwok.x-k8s.io/v1alpha1', kind: 'ClusterPortForward', metadata: meta('tower-e2e-port-forward'), spec: { forwards } }
  ]
  return docs.map((d) => JSON.stringify(d)).join('\n---\n') + '\n'
}

/**
 * Write kwok's --config file: its options, the release's stage files (without stages the bare kwok
 * binary refuses to start: kwokctl normally embeds them) and the streaming config.
 */
export function writeKwokConfig (path: string, opts: {
  stagesDir: string
  streaming: KwokStreamingOptions
}): string {
  const options = {
    apiVersion: 'config.kwok.x-k8s.io/v1alpha1',
    kind: 'KwokConfiguration',
    options: {
      manageAllNodes: false,
      manageNodesWithAnnotationSelector: `${KWOK_NODE_ANNOTATION}=fake`,
      // Fake pod IPs only ever appear in status; keep them apart from the service range.
      cidr: '10.244.0.0/16',
      nodeLeaseDurationSeconds: 40,
      enableDebuggingHandlers: true,
      enableProfilingHandler: false,
      enableContentionProfiling: false,
      // kwok v0.8.0 does not default these when a KwokConfiguration document is given (it then fails
      // with "node leases parallelism must be greater than 0"): the values of kwok's own kwok.yaml.
      nodeLeaseParallelism: 4,
      podPlayStageParallelism: 4,
      nodePlayStageParallelism: 4,
      podsOnNodeSyncParallelism: 1,
      enablePodsOnNodeSyncListPager: true,
      enablePodsOnNodeSyncStreamWatch: false
    }
  }
  const stages = readdirSync(opts.stagesDir).filter((f) => f.endsWith('.yaml')).sort()
    .map((f) => readFileSync(join(opts.stagesDir, f), 'utf8').trim())
  writeFileSync(path, [JSON.stringify(options), ...stages, configureKwokStreaming(opts.streaming)].join('\n---\n'))
  return path
}

/** Names of what {@link createFakeNodeAndPod} made. */
export interface FakePod { node: string, pod: string, namespace: string, container: string }

/**
 * Create a kwok-managed fake node and a pod bound to it (there is no scheduler: spec.nodeName is set),
 * and wait (kubectl wait, i.e. a watch) until the node is Ready and the pod Running.
 */
export async function createFakeNodeAndPod (member: ApiServer, opts: {
  name: string
  namespace?: string
  /** Node name; default `<name>-node`. */
  node?: string
  /** Container name; default 'app'. */
  container?: string
  timeoutMs?: number
}): Promise<FakePod> {
  const namespace = opts.namespace ?? 'default'
  const node = opts.node ?? `${opts.name}-node`
  const container = opts.container ?? 'app'
  const timeout = `${Math.ceil((opts.timeoutMs ?? 60_000) / 1000)}s`
  const objects: object[] = []
  if (namespace !== 'default') objects.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } })
  objects.push({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: node,
      annotations: { [KWOK_NODE_ANNOTATION]: 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: { 'kubernetes.io/hostname': node, 'kubernetes.io/os': 'linux', type: 'kwok' }
    },
    spec: { taints: [{ key: KWOK_NODE_ANNOTATION, value: 'fake', effect: 'NoSchedule' }] }
  })
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: opts.name, namespace, labels: { app: opts.name } },
    spec: {
      nodeName: node,
      automountServiceAccountToken: false,
      containers: [{ name: container, image: 'tower-e2e/fake:latest' }],
      tolerations: [{ key: KWOK_NODE_ANNOTATION, operator: 'Exists', effect: 'NoSchedule' }]
    }
  }
  const list = { apiVersion: 'v1', kind: 'List', items: objects }
  await member.kubectl(['apply', '-f', '-'], { input: JSON.stringify(list) })
  await member.kubectl(['wait', '--for=condition=Ready', `--timeout=${timeout}`, `node/${node}`])
  // The pod only once kwok has taken the node: applied together with it, the pod once stayed Pending
  // for the whole timeout (a CI run at 180319c), as if kwok had seen it before managing its node.
  await member.kubectl(['apply', '-f', '-'], { input: JSON.stringify(pod) })
  try {
    await member.kubectl(['wait', '--for=jsonpath={.status.phase}=Running', `--timeout=${timeout}`,
      `--namespace=${namespace}`, `pod/${opts.name}`])
  } catch (err) {
    const status = await member.kubectl(['get', 'pod', opts.name, `--namespace=${namespace}`, '-o', 'jsonpath={.status}']).catch((e: Error) => e.message)
    throw new Error(`${(err as Error).message}\npod ${namespace}/${opts.name} status: ${status}`)
  }
  return { node, pod: opts.name, namespace, container }
}

/**
 * Append lines to the file kwok serves for `kubectl logs` and `attach`. kwok parses it as a CRI log
 * ("<RFC3339Nano time> stdout F <line>"); a plain line makes it fail with "unsupported log format".
 */
export function appendPodLog (logsFile: string, ...lines: string[]): void {
  const now = new Date().toISOString()
  appendFileSync(logsFile, lines.map((l) => `${now} stdout F ${l}\n`).join(''))
}
