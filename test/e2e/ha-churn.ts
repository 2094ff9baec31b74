/**
 * The HA e2e test's writer: a child process (run inside the member's network namespace, where the
 * member apiserver is reachable) that creates, updates and deletes ConfigMaps at a steady rate, directly
 * on the member, so that an informer through Tower has events to miss while replicas die and drain.
 *
 * Tick i (every intervalMs): create `churn-<i>`; update `churn-<i-2>`; on even ticks delete
 * `churn-<i-4>`. Every done operation is one JSON line on stdout: {"op","name","rv"}; a failed one is
 * {"op":"error","name","message"} and the next tick goes on. SIGTERM ends it after the tick in progress,
 * with a final {"op":"stopped"} line.
 *
 * Usage: node --experimental-strip-types test/e2e/ha-churn.ts <kubeconfig> <namespace> <intervalMs>
 */
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node'

const [kubeconfig, namespace, intervalArg] = process.argv.slice(2)
const intervalMs = Number(intervalArg)
if (kubeconfig === undefined || namespace === undefined || !Number.isInteger(intervalMs) || intervalMs < 10) {
  process.stderr.write('usage: ha-churn.ts <kubeconfig> <namespace> <intervalMs>\n')
  process.exit(2)
}
const kc = new KubeConfig()
kc.loadFromFile(kubeconfig)
const api = kc.makeApiClient(CoreV1Api)
let stopping = false
process.on('SIGTERM', () => { stopping = true })

const say = (o: object): void => { process.stdout.write(JSON.stringify(o) + '\n') }
const deleted = new Set<number>()
const name = (i: number): string => `churn-${i}`

async function op (what: string, i: number, fn: () => Promise<{ metadata?: { resourceVersion?: string } }>): Promise<void> {
  try {
    const o = await fn()
    say({ op: what, name: name(i), rv: o.metadata?.resourceVersion })
  } catch (err) {
    say({ op: 'error', what, name: name(i), message: err instanceof Error ? err.message.slice(0, 300) : String(err) })
  }
}

async function tick (i: number): Promise<void> {
  await op('create', i, () => api.createNamespacedConfigMap({ namespace, body: { metadata: { name: name(i) }, data: { v: '0' } } }))
  const u = i - 2
  if (u >= 0 && !deleted.has(u)) {
    await op('update', u, () => api.patchNamespacedConfigMap({ name: name(u), namespace, body: [{ op: 'replace', path: '/data/v', value: String(i) }] }))
  }
  const d = i - 4
  if (i % 2 === 0 && d >= 0) {
    deleted.add(d)
    await op('delete', d, () => api.deleteNamespacedConfigMap({ name: name(d), namespace }))
  }
}

let i = 0
while (!stopping) {
  const started = Date.now()
  await tick(i++)
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, intervalMs - (Date.now() - started))))
}
say({ op: 'stopped' })
