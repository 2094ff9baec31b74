// Issue 3, test 4: a @kubernetes/client-node informer on the member's ConfigMaps, through Tower, survives
// an agent crash (SIGKILL, then a new agent process) and a server restart (SIGTERM, then a new server
// process on the same state directory, so the same ports): it reconnects, catches up with every change
// made directly on the member in between (creates, an update, deletes), and keeps watching. One informer
// per mode: proxy (Tower-issued client certificate) and passthrough (the member's own credentials).
//
// client-node's ListWatch reports a broken watch or list through its 'error' callbacks and leaves the
// restart to the application; the informers here restart 300 ms after an error, as its README shows.
// A restarted ListWatch resumes watching from its last resourceVersion (no new list while the apiserver
// still has those events). So each mode gets two informers: one restarts that way ("resume"), the other
// forgets its resourceVersion first, as ListWatch does itself after a 410 Gone, and so re-lists and
// drops what vanished meanwhile by comparing the new list with its cache ("relist").
//
// Needs the binaries: bash test/e2e/tools/build.sh. Run: node --test test/e2e/tunnel-informer.test.ts
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { CoreV1Api, KubeConfig, makeInformer, type Informer, type ObjectCache, type V1ConfigMap } from '@kubernetes/client-node'
import { makeTempDir, startControlPlane, waitFor, type ControlPlane } from './harness/index.ts'
import {
  applyRepoManifest,
  getOnce,
  serviceAccountToken,
  startTowerAgent,
  startTowerServer,
  verboseLog,
  type AddedCluster,
  type AgentUpstream,
  type TowerProcess,
  type TowerServerHandle
} from './tunnel-helpers.ts'

const NS = 'informed'
const CONVERGE_MS = 60_000

/** An informer on NS's ConfigMaps through one kubeconfig, restarting itself after errors. */
interface Watched {
  name: string
  kubeconfig: string
  informer: Informer<V1ConfigMap> & ObjectCache<V1ConfigMap>
  errors: string[]
  lists: number
  deletes: number
  stop (): Promise<void>
}

function startInformer (name: string, kubeconfig: string, opts: { relist: boolean }): Watched {
  const kc = new KubeConfig()
  kc.loadFromFile(kubeconfig)
  const api = kc.makeApiClient(CoreV1Api)
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  const w: Watched = {
    name,
    kubeconfig,
    errors: [],
    lists: 0,
    deletes: 0,
    informer: makeInformer(kc, `/api/v1/namespaces/${NS}/configmaps`, () => {
      w.lists++
      return api.listNamespacedConfigMap({ namespace: NS })
    }),
    stop: async () => {
      stopped = true
      clearTimeout(timer)
      await w.informer.stop()
    }
  }
  w.informer.on('error', (err: unknown) => {
    w.errors.push(err instanceof Error ? `${err.name}: ${err.message}` : String(err))
    if (stopped || timer !== undefined) return
    timer = setTimeout(() => {
      timer = undefined
      if (stopped) return
      // ListWatch's own reaction to 410 Gone (cache.js doneHandler); it has no public way to ask for it.
      if (opts.relist) (w.informer as unknown as { resourceVersion: string }).resourceVersion = ''
      void w.informer.start()
    }, 300)
  })
  w.informer.on('delete', () => { w.deletes++ })
  void w.informer.start()
  return w
}

/** Names of the ConfigMaps in the informer's cache, sorted. */
function cached (w: Watched): string[] {
  return w.informer.list(NS).map((cm) => cm.metadata!.name!).sort()
}

/** Wait until `check` holds for the informer's cache. */
async function converge (w: Watched, what: string, check: (w: Watched) => boolean): Promise<void> {
  try {
    await waitFor(`${w.name} informer: ${what}`, async () => check(w) ? true : undefined, { timeoutMs: CONVERGE_MS, intervalMs: 100 })
  } catch (err) {
    throw new Error(`${(err as Error).message}\ncache: ${cached(w).join(',')}\nerrors: ${w.errors.slice(-5).join(' | ')}`)
  }
}

const has = (...names: string[]) => (w: Watched): boolean => names.every((n) => w.informer.get(n, NS) !== undefined)
const hasNot = (...names: string[]) => (w: Watched): boolean => names.every((n) => w.informer.get(n, NS) === undefined)

describe('tunnel e2e: a client-node informer survives agent and server restarts', { timeout: 600_000 }, () => {
  let cp: ControlPlane
  let dir: string
  let logDir: string
  let tower: TowerServerHandle
  let upstream: AgentUpstream
  const clusters: Array<AddedCluster & { port: number }> = []
  const agents = new Map<string, TowerProcess>()
  const watched: Watched[] = []

  before(async () => {
    cp = await startControlPlane({ log: verboseLog })
    console.log(`# member kube-apiserver serverVersion.gitVersion = ${cp.member.version}`)
    dir = makeTempDir('tunnel-informer')
    logDir = join(dir, 'logs')
    mkdirSync(logDir)
    await applyRepoManifest(cp.member, 'deploy/agent/rbac.yaml')
    await applyRepoManifest(cp.member, 'deploy/agent/rbac-admin.yaml')
    const tokenFile = join(dir, 'sa-token')
    await serviceAccountToken(cp.member, 'tower-system', 'tower-agent', tokenFile)
    upstream = { url: cp.member.url, caPem: cp.member.caPem, tokenFile }
    tower = await startTowerServer(dir, { logDir })
    clusters.push(await tower.addCluster('inf-proxy'))
    clusters.push(await tower.addCluster('inf-pt', { mode: 'passthrough' }))
    for (const c of clusters) agents.set(c.name, await startTowerAgent(tower, c, upstream, { logDir }))
    await cp.member.kubectl(['create', 'namespace', NS])
    for (const n of ['seed-0', 'seed-1', 'seed-2']) await cp.member.kubectl(['create', 'configmap', n, '-n', NS])
    const proxyKc = await tower.kubeconfig('inf-proxy')
    const ptKc = await tower.kubeconfig('inf-pt', { from: cp.member.adminKubeconfigPath })
    for (const relist of [false, true]) {
      const how = relist ? 'relist' : 'resume'
      watched.push(startInformer(`proxy/${how}`, proxyKc, { relist }))
      watched.push(startInformer(`passthrough/${how}`, ptKc, { relist }))
    }
  })

  after(async () => {
    for (const w of watched) await w.stop()
    for (const a of agents.values()) await a.stop()
    await tower?.stop()
    await cp?.stop()
  })

  const proxyKc = (): string => watched.find((w) => w.name.startsWith('proxy'))!.kubeconfig
  const ptKc = (): string => watched.find((w) => w.name.startsWith('passthrough'))!.kubeconfig
  const create = async (...names: string[]): Promise<void> => {
    for (const n of names) await cp.member.kubectl(['create', 'configmap', n, '-n', NS, `--from-literal=name=${n}`])
  }

  test('the informers list and then watch through the tunnel', async () => {
    for (const w of watched) await converge(w, 'initial list', has('seed-0', 'seed-1', 'seed-2'))
    await create('live-1')
    for (const w of watched) await converge(w, 'watch event for live-1', has('live-1'))
    for (const w of watched) assert.equal(w.lists, 1, `${w.name}: one list so far`)
  })

  test('agent crash and restart: changes made meanwhile arrive, and watching goes on', async () => {
    for (const c of clusters) {
      const agent = agents.get(c.name)!
      process.kill(agent.process.pid, 'SIGKILL')
      await agent.stop()
    }
    // The member is now unreachable through Tower: proxy mode answers 503, passthrough drops the connection.
    // (kubectl would retry the 503 for 15 s, honouring Retry-After: ask once, with the same credentials.)
    const down = await getOnce(proxyKc(), '/version')
    assert.equal(down.status, 503, down.body.toString())
    const status = JSON.parse(down.body.toString()) as { kind: string, code: number, reason: string, message: string }
    assert.equal(status.kind, 'Status')
    assert.equal(status.reason, 'ServiceUnavailable')
    assert.match(status.message, /no agent/)
    assert.ok(down.headers['retry-after'] !== undefined, 'a 503 without Retry-After')
    const downPt = await getOnce(ptKc(), '/version')
    assert.equal(downPt.status, 0, `passthrough without an agent answered ${downPt.status}`)
    console.log(`# without an agent: proxy answers 503 (${status.message}); passthrough: ${downPt.error}`)

    await create('while-agent-down-1', 'while-agent-down-2', 'while-agent-down-3')
    await cp.member.kubectl(['delete', 'configmap', 'seed-0', '-n', NS])
    let t0 = Date.now()
    for (const c of clusters) agents.set(c.name, await startTowerAgent(tower, c, upstream, { logDir, name: `tower-agent-${c.name}-2` }))
    console.log(`# agents restarted and connected in ${Date.now() - t0} ms`)
    t0 = Date.now()

    for (const w of watched) {
      await converge(w, 'objects created while the agent was down', has('while-agent-down-1', 'while-agent-down-2', 'while-agent-down-3'))
      await converge(w, 'seed-0 deleted while the agent was down', hasNot('seed-0'))
    }
    console.log(`# informers caught up after the agent restart in ${Date.now() - t0} ms`)
    await create('after-agent-restart')
    for (const w of watched) await converge(w, 'watch event after the agent restart', has('after-agent-restart'))
    for (const w of watched) assert.ok(w.errors.length > 0, `${w.name}: the informer noticed the outage`)
  })

  test('server restart on the same state dir: same ports, agents reconnect, nothing is missed', async () => {
    const ports = new Map(clusters.map((c) => [c.name, c.port]))
    const marks = new Map([...agents].map(([name, a]) => [name, a.lines.length]))
    const errorsBefore = watched.map((w) => w.errors.length)
    await tower.server.stop()

    await create('while-server-down-1', 'while-server-down-2', 'while-server-down-3')
    await cp.member.kubectl(['delete', 'configmap', 'seed-1', '-n', NS])
    await cp.member.kubectl(['patch', 'configmap', 'live-1', '-n', NS, '--type=merge', '-p', '{"data":{"state":"updated-while-server-down"}}'])

    await tower.restart()
    for (const c of clusters) {
      const ready = await tower.server.waitFor((l) => l.msg === 'cluster listener ready' && l.cluster === c.name, 30_000)
      assert.equal(Number(ready.port), ports.get(c.name), `${c.name} kept its port`)
    }
    for (const [name, agent] of agents) await agent.waitFor((l) => l.msg === 'connected to server', 60_000, marks.get(name))

    for (const w of watched) {
      await converge(w, 'objects created while the server was down', has('while-server-down-1', 'while-server-down-2', 'while-server-down-3'))
      await converge(w, 'seed-1 deleted while the server was down', hasNot('seed-1'))
      await converge(w, 'live-1 updated while the server was down',
        (x) => x.informer.get('live-1', NS)?.data?.state === 'updated-while-server-down')
    }
    await create('after-server-restart')
    for (const w of watched) await converge(w, 'watch event after the server restart', has('after-server-restart'))
    watched.forEach((w, i) => assert.ok(w.errors.length > errorsBefore[i]!, `${w.name}: the informer noticed the restart`))
  })

  test('each informer cache equals the member\'s list', async () => {
    const onMember = (await cp.member.kubectl(['get', 'configmaps', '-n', NS, '-o', 'jsonpath={.items[*].metadata.name}']))
      .split(' ').filter((n) => n !== '').sort()
    assert.equal(onMember.length, 10)
    for (const w of watched) {
      assert.deepEqual(cached(w), onMember, w.name)
      console.log(`# ${w.name} informer: ${w.lists} list(s), ${w.deletes} delete(s) seen, ${w.errors.length} error callback(s) (restarts), cache = member`)
      assert.equal(w.deletes, 2, `${w.name}: seed-0 and seed-1 left the cache as deletions`)
      // resume: the first list only; relist: one more after each of the two outages at least.
      if (w.name.endsWith('relist')) assert.ok(w.lists >= 3, `${w.name}: ${w.lists} lists`)
      else assert.equal(w.lists, 1, `${w.name}: ${w.lists} lists`)
    }
  })
})
