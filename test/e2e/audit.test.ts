// The audit log end to end (issue 11, "Audit"): the `tower` CLI runs the server with its default audit
// (level Metadata, to stdout among the log lines) and a real agent in front of the real member
// kube-apiserver. kubectl (client-go: HTTP/2 to Tower) and plain HTTP/1.1 GETs go through a proxy-mode
// port; every request kubectl reports making has exactly one record, with the right user, verb and code,
// a watch has two, a refused caller one without user, and no record carries the caller token, the
// ServiceAccount token, or the client key. The member kube-apiserver takes Tower's Audit-ID as its own:
// the Audit-Id it answers with equals the record's auditID.
//
// Needs the binaries: bash test/e2e/tools/build.sh. Run: node --test test/e2e/audit.test.ts
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { kubectl, makeTempDir, startControlPlane, waitFor, type ControlPlane } from './harness/index.ts'
import {
  applyRepoManifest,
  getOnce,
  serviceAccountToken,
  startTowerAgent,
  startTowerServer,
  verboseLog,
  type AddedCluster,
  type LogLine,
  type TowerProcess,
  type TowerServerHandle
} from './tunnel-helpers.ts'

interface Audit {
  auditID: string
  stage: string
  verb: string
  requestURI: string
  requestReceivedTimestamp: string
  user?: { username: string, groups: string[] }
  responseStatus?: { code: number }
  objectRef?: { resource: string, namespace?: string, name?: string }
  tower: { cluster: string, agentId?: string, mode: string, protocol: string, bytesOut: number }
}

function audits (lines: LogLine[]): Audit[] {
  return lines.filter((l) => l.kind === 'Event' && l.apiVersion === 'audit.k8s.io/v1') as unknown as Audit[]
}

/**
 * The records of the requests `run` makes: those received since it started, up to the record of a
 * sentinel request sent after it. Records reach the server's stdout in the order requests end, so every
 * record of `run`'s requests is in the lines before the sentinel's, however late the pipe delivers them.
 */
async function recordsOf (tower: TowerServerHandle, kubeconfig: string, run: () => Promise<void>): Promise<Audit[]> {
  const t0 = Date.now()
  await run()
  const sentinel = `/version?sentinel=${randomUUID()}`
  assert.equal((await getOnce(kubeconfig, sentinel)).status, 200)
  await waitFor('the sentinel\'s record', async () => audits(tower.server.lines).some((e) => e.requestURI === sentinel) ? true : undefined, { timeoutMs: 10_000, intervalMs: 50 })
  const all = audits(tower.server.lines)
  const end = all.findIndex((e) => e.requestURI === sentinel)
  return all.slice(0, end).filter((e) => Date.parse(e.requestReceivedTimestamp) >= t0)
}

describe('audit log: one record per caller request through a real agent and kube-apiserver', { timeout: 600_000 }, () => {
  let cp: ControlPlane
  let tower: TowerServerHandle
  let agent: TowerProcess
  let cluster: AddedCluster & { port: number }
  let kcCert: string
  let kcToken: string
  let saToken: string

  before(async () => {
    cp = await startControlPlane({ log: verboseLog })
    const dir = makeTempDir('audit')
    tower = await startTowerServer(dir)
    cluster = await tower.addCluster('member-audit')
    kcCert = await tower.kubeconfig('member-audit', { user: 'auditor', groups: ['audit-devs'] })
    kcToken = await tower.kubeconfig('member-audit', { token: true })
    await applyRepoManifest(cp.member, 'deploy/agent/rbac.yaml')
    await applyRepoManifest(cp.member, 'deploy/agent/rbac-admin.yaml')
    const tokenFile = join(dir, 'sa-token')
    saToken = await serviceAccountToken(cp.member, 'tower-system', 'tower-agent', tokenFile)
    agent = await startTowerAgent(tower, cluster, { url: cp.member.url, caPem: cp.member.caPem, tokenFile })
    await waitFor('kubectl through Tower', async () => (await kubectl(kcCert, ['get', 'ns', '-o', 'name'])).code === 0 ? true : undefined, { timeoutMs: 60_000, intervalMs: 250 })
  })

  after(async () => {
    await agent?.stop()
    await tower?.stop()
    await cp?.stop()
  })

  test('kubectl: exactly one record per request it made, with user, verb, code, cluster and agent', async () => {
    let r: { code: number | null, stderr: string } = { code: -1, stderr: '' }
    // -v=6 prints one line per request with its status; a fresh cache dir makes it rediscover.
    const mine = await recordsOf(tower, kcToken, async () => {
      r = await kubectl(kcCert, ['get', 'configmaps', '-n', 'kube-system', '-o', 'name', '-v=6', '--cache-dir', makeTempDir('kcache')])
    })
    assert.equal(r.code, 0, r.stderr)
    const made = [...r.stderr.matchAll(/ (GET|POST|PUT|PATCH|DELETE) (https:\/\/\S+) (\d{3})/g)].map((m) => ({ method: m[1]!, uri: new URL(m[2]!).pathname + new URL(m[2]!).search, code: Number(m[3]) }))
    assert.ok(made.length >= 2, `kubectl reported ${made.length} requests:\n${r.stderr}`)
    // kubectl v1.32 also sends GET /version?timeout=5s through a client its -v log does not cover (seen in
    // every run); that one request is allowed beyond the logged ones, once at most.
    const unlogged = mine.filter((e) => !made.some((m) => m.uri === e.requestURI))
    assert.ok(unlogged.length <= 1 && unlogged.every((e) => e.requestURI === '/version?timeout=5s' && e.verb === 'get'), `records not logged by kubectl: ${unlogged.map((e) => e.requestURI).join(' ')}`)
    assert.equal(mine.length - unlogged.length, made.length, `records ${mine.map((e) => e.requestURI).join(' ')} vs requests ${made.map((m) => m.uri).join(' ')}\n${r.stderr}`)
    assert.deepEqual(mine.filter((e) => !unlogged.includes(e)).map((e) => e.requestURI).sort(), made.map((m) => m.uri).sort())
    assert.equal(new Set(mine.map((e) => e.auditID)).size, mine.length)
    for (const e of mine) {
      assert.equal(e.stage, 'ResponseComplete')
      assert.deepEqual(e.user, { username: 'auditor', groups: ['audit-devs'] })
      assert.equal(e.tower.cluster, 'member-audit')
      assert.equal(e.tower.mode, 'proxy')
      assert.equal(e.tower.protocol, 'h2', 'kubectl speaks HTTP/2 to Tower')
      assert.equal(typeof e.tower.agentId, 'string')
      assert.equal(e.responseStatus?.code, made.find((m) => m.uri === e.requestURI)?.code ?? 200)
    }
    const list = mine.find((e) => e.objectRef?.resource === 'configmaps')
    assert.ok(list !== undefined)
    assert.equal(list.verb, 'list')
    assert.equal(list.objectRef?.namespace, 'kube-system')
    console.log(`# kubectl logged ${made.length} requests (+${unlogged.length} unlogged /version); ${mine.length} audit records`)
  })

  test('the member kube-apiserver answers with Tower\'s auditID as its Audit-Id', async () => {
    let res: Awaited<ReturnType<typeof getOnce>> = { status: 0, headers: {}, body: Buffer.alloc(0) }
    const [e, ...more] = await recordsOf(tower, kcToken, async () => {
      res = await getOnce(kcToken, '/api/v1/namespaces/default', { 'Audit-ID': 'forged-by-caller' })
    })
    assert.equal(res.status, 200, res.body.toString())
    assert.equal(more.length, 0)
    assert.equal(e!.verb, 'get')
    assert.equal(e!.tower.protocol, 'http/1.1')
    assert.equal(res.headers['audit-id'], e!.auditID)
    console.log(`# member kube-apiserver Audit-Id ${String(res.headers['audit-id'])} == Tower auditID ${e!.auditID}`)
  })

  test('a watch: ResponseStarted and ResponseComplete with one auditID; a refused caller: 401 with no user', async () => {
    const [started, done, refused, ...more] = await recordsOf(tower, kcToken, async () => {
      const watch = await getOnce(kcToken, '/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1')
      assert.equal(watch.status, 200)
      const bad = await getOnce(kcToken, '/api/v1/namespaces', { authorization: 'Bearer tower-caller_not-a-real-one' })
      assert.equal(bad.status, 401)
    })
    assert.equal(more.length, 0)
    assert.deepEqual([started!.stage, done!.stage], ['ResponseStarted', 'ResponseComplete'])
    assert.equal(started!.auditID, done!.auditID)
    assert.equal(done!.verb, 'watch')
    assert.equal(done!.responseStatus?.code, 200)
    assert.equal(refused!.responseStatus?.code, 401)
    assert.equal(refused!.user, undefined)
    assert.equal(refused!.tower.agentId, undefined)
  })

  test('no secret in any record: caller token, ServiceAccount token, client key', async () => {
    const yaml = readFileSync(kcToken, 'utf8')
    const callerToken = /token: (\S+)/.exec(yaml)![1]!
    await getOnce(kcToken, `/api/v1/namespaces?token=${callerToken}&access_token=${saToken}`)
    const key = Buffer.from(/client-key-data: (\S+)/.exec(readFileSync(kcCert, 'utf8'))![1]!, 'base64').toString('utf8')
    await waitFor('the record of the token query', async () => audits(tower.server.lines).some((e) => e.requestURI.includes('token=REDACTED')) ? true : undefined, { timeoutMs: 10_000, intervalMs: 50 })
    const text = JSON.stringify(audits(tower.server.lines))
    for (const secret of [callerToken, saToken, cluster.token, ...key.split('\n').filter((l) => l !== '' && !l.startsWith('-----'))]) {
      assert.ok(!text.includes(secret), `an audit record contains ${secret.slice(0, 12)}…`)
    }
    assert.doesNotMatch(text, /authorization|bearer/i)
    console.log(`# ${audits(tower.server.lines).length} audit records checked for secrets`)
  })
})
