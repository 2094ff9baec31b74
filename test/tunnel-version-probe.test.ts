/**
 * The server reads a proxy-mode member's Kubernetes version through the
 * tunnel when its first agent connects: a real server and real agents (the
 * agent package's proxy path) against an HTTPS upstream whose /version
 * answer each test chooses. The version and the time the last agent left
 * reach the registry's status report.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import https from 'node:https'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createCa, issueServerCert } from '@tower/pki'
import type { Agent } from '@tower/agent'
import type { ClusterRuntimeStatus } from '@tower/server'
import type { Upstream } from './fixtures/upstream.ts'
import { addCluster, startAgent, startTower, type TestTower } from './helpers/tower.ts'

// Cleanups of a test, run last-registered first (agents before the server
// they talk to, the server before the upstream), whatever the test did.
const stacks = new WeakMap<TestContext, Array<() => unknown>>()
function defer (t: TestContext, fn: () => unknown): void {
  let stack = stacks.get(t)
  if (stack === undefined) {
    const created: Array<() => unknown> = []
    stack = created
    stacks.set(t, created)
    t.after(async () => { for (const f of created.reverse()) await f() })
  }
  stack.push(fn)
}

interface VersionUpstream {
  upstream: Upstream
  /** Every /version request's headers, in order. */
  versionRequests: Array<Record<string, unknown>>
  /** Every request's path, in order. */
  paths: string[]
}

async function versionUpstream (t: TestContext, answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<VersionUpstream> {
  const ca = createCa({ commonName: 'upstream-ca', validityDays: 2 })
  const cert = issueServerCert(ca, { commonName: 'upstream', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityDays: 2 })
  const versionRequests: VersionUpstream['versionRequests'] = []
  const paths: string[] = []
  const server = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    paths.push(req.url ?? '')
    if (req.url === '/version') {
      versionRequests.push({ ...req.headers })
      answer(req, res)
    } else {
      res.writeHead(404).end()
    }
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  defer(t, async () => { server.closeAllConnections(); server.close(); await once(server, 'close') })
  const port = (server.address() as AddressInfo).port
  return { upstream: { url: `https://127.0.0.1:${port}`, port, caPem: ca.certPem } as Upstream, versionRequests, paths }
}

function versionBody (gitVersion: unknown): string {
  return JSON.stringify({ major: '1', minor: '36', gitVersion, platform: 'linux/amd64' })
}

async function tower (t: TestContext, probeTimeoutMs = 5000): Promise<TestTower> {
  const tw = await startTower({ server: { versionProbeTimeoutMs: probeTimeoutMs } })
  defer(t, async () => { await tw.stop() })
  return tw
}

// An agent stopped at the end of the test whatever happens (a running agent keeps the process alive).
async function agentOf (t: TestContext, tw: TestTower, cluster: string, token: string, up: VersionUpstream, agentId?: string): Promise<Agent> {
  const agent = await startAgent(tw, cluster, token, up.upstream, agentId === undefined ? {} : { agentId })
  defer(t, async () => { await agent.stop() })
  return agent
}

async function statusOf (tw: TestTower, cluster: string): Promise<ClusterRuntimeStatus | undefined> {
  return (await tw.registry.readStatus())?.clusters[cluster]
}

async function eventually<T> (what: string, read: () => Promise<T>, ok: (v: T) => boolean, deadlineMs = 10_000): Promise<T> {
  const deadline = Date.now() + deadlineMs
  for (;;) {
    const v = await read()
    if (ok(v)) return v
    if (Date.now() > deadline) assert.fail(`not within ${deadlineMs} ms: ${what} (last: ${JSON.stringify(v)})`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

test('the first agent of a proxy cluster triggers GET /version with the agent\'s credentials; the version and lastAgentLeftAt reach the status report', { timeout: 30_000 }, async (t) => {
  const up = await versionUpstream(t, (_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end(versionBody('v1.36.3')) })
  const tw = await tower(t)
  const { token } = await addCluster(tw, 'probed', { impersonate: true })
  const agent = await agentOf(t, tw, 'probed', token, up)
  const status = await eventually('kubernetesVersion in the report', async () => await statusOf(tw, 'probed'), (s) => s?.kubernetesVersion === 'v1.36.3')
  assert.equal(status?.lastAgentLeftAt, undefined, 'no lastAgentLeftAt while an agent is connected')
  assert.equal(up.versionRequests.length, 1)
  const headers = up.versionRequests[0]!
  assert.equal(headers.authorization, 'Bearer agent-sa-token', 'the agent authenticates with its own credentials')
  for (const name of Object.keys(headers)) assert.ok(!name.startsWith('impersonate-'), `no caller identity is sent (${name})`)

  const stoppedAt = Date.now()
  await agent.stop()
  const after = await eventually('lastAgentLeftAt once the agent left', async () => await statusOf(tw, 'probed'), (s) => s?.lastAgentLeftAt !== undefined && s.agents.length === 0)
  assert.ok(Date.parse(after!.lastAgentLeftAt!) >= stoppedAt - 1000)
  assert.equal(after?.kubernetesVersion, 'v1.36.3', 'the last known version stays while disconnected')
})

test('a second agent of a cluster whose version is known sends no probe; a reconnect after all agents left probes again', { timeout: 30_000 }, async (t) => {
  let version = 'v1.36.3'
  const up = await versionUpstream(t, (_req, res) => { res.writeHead(200).end(versionBody(version)) })
  const tw = await tower(t)
  const { token } = await addCluster(tw, 'pair')
  const first = await agentOf(t, tw, 'pair', token, up, 'one')
  await eventually('first version', async () => await statusOf(tw, 'pair'), (s) => s?.kubernetesVersion === 'v1.36.3')
  const second = await agentOf(t, tw, 'pair', token, up, 'two')
  await eventually('two agents reported', async () => await statusOf(tw, 'pair'), (s) => s?.agents.length === 2)
  assert.equal(up.versionRequests.length, 1, 'one probe for the cluster, not one per agent')
  await first.stop()
  await second.stop()
  await eventually('no agent left', async () => await statusOf(tw, 'pair'), (s) => s?.agents.length === 0)
  version = 'v1.37.0'
  await agentOf(t, tw, 'pair', token, up, 'three')
  await eventually('the upgraded version', async () => await statusOf(tw, 'pair'), (s) => s?.kubernetesVersion === 'v1.37.0')
  assert.equal(up.versionRequests.length, 2)
})

test('hostile /version answers leave the version unknown and the server serving; a failed probe is retried at the next connect', { timeout: 30_000 }, async (t) => {
  const answers: Array<(res: ServerResponse) => void> = [
    (res) => res.writeHead(200).end(versionBody('v'.repeat(65))),
    (res) => res.writeHead(200).end(versionBody('v1.36.3\u0000evil')),
    (res) => res.writeHead(200).end(versionBody(12345)),
    (res) => res.writeHead(200).end('{"gitVersion":'),
    (res) => res.writeHead(200).end('{"__proto__":{"gitVersion":"v9.9.9"}}'),
    (res) => res.writeHead(500).end(versionBody('v1.36.3')),
    (res) => { res.writeHead(200); res.end(Buffer.alloc(1024 * 1024, ' ')) },
    (res) => res.writeHead(200).end(versionBody('v1.36.3'))
  ]
  let served = 0
  const up = await versionUpstream(t, (_req, res) => { answers[Math.min(served++, answers.length - 1)]!(res) })
  const tw = await tower(t)
  const { token } = await addCluster(tw, 'hostile')
  for (let i = 0; i < answers.length - 1; i++) {
    const agent = await agentOf(t, tw, 'hostile', token, up, `a${i}`)
    await eventually(`probe ${i} answered`, async () => up.versionRequests.length, (n) => n === i + 1)
    // Let the server finish with the answer before the next connect.
    await new Promise((resolve) => setTimeout(resolve, 150))
    const s = await statusOf(tw, 'hostile')
    assert.equal(s?.kubernetesVersion, undefined, `answer ${i} gave no version`)
    await agent.stop()
    await eventually('the agent left', async () => await statusOf(tw, 'hostile'), (st) => st?.agents.length === 0)
  }
  await agentOf(t, tw, 'hostile', token, up, 'good')
  await eventually('the valid answer is taken', async () => await statusOf(tw, 'hostile'), (s) => s?.kubernetesVersion === 'v1.36.3')
  assert.equal(tw.logs.lines.filter((l) => l.level >= 50).length, 0, 'nothing was logged as an error')
})

test('a /version that never answers is given up after the deadline', { timeout: 30_000 }, async (t) => {
  const hanging: ServerResponse[] = []
  defer(t, () => { for (const res of hanging) res.destroy() })
  const up = await versionUpstream(t, (_req, res) => { hanging.push(res) })
  const tw = await tower(t, 300)
  const { token } = await addCluster(tw, 'slow')
  await agentOf(t, tw, 'slow', token, up, 'a')
  await eventually('the probe reached the member', async () => up.versionRequests.length, (n) => n === 1)
  const failed = await eventually('the probe is given up', async () => tw.logs.find('version probe failed; retried at the next agent connect'), (l) => l.length > 0, 5000)
  assert.match(failed[0]!.reason, /no answer within 300 ms/)
})

test('one probe in flight per cluster: agents connecting while it hangs send no second one', { timeout: 30_000 }, async (t) => {
  const hanging: ServerResponse[] = []
  defer(t, () => { for (const res of hanging) res.destroy() })
  const up = await versionUpstream(t, (_req, res) => { hanging.push(res) })
  const tw = await tower(t, 5000)
  const { token } = await addCluster(tw, 'busy')
  await agentOf(t, tw, 'busy', token, up, 'a')
  await eventually('the probe reached the member', async () => up.versionRequests.length, (n) => n === 1)
  await agentOf(t, tw, 'busy', token, up, 'b')
  await agentOf(t, tw, 'busy', token, up, 'c')
  await eventually('three agents reported', async () => await statusOf(tw, 'busy'), (s) => s?.agents.length === 3)
  assert.equal(up.versionRequests.length, 1, 'no second probe while one is in flight')
  for (const res of hanging) res.destroy()
})

test('passthrough clusters are never probed', { timeout: 30_000 }, async (t) => {
  const up = await versionUpstream(t, (_req, res) => { res.writeHead(200).end(versionBody('v1.36.3')) })
  const tw = await tower(t)
  const { token } = await addCluster(tw, 'raw', { mode: 'passthrough' })
  await agentOf(t, tw, 'raw', token, up)
  await eventually('the agent is reported', async () => await statusOf(tw, 'raw'), (s) => s?.agents.length === 1)
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.deepEqual(up.paths, [], 'no request reached the member')
  assert.deepEqual(tw.logs.lines.filter((l) => l.component === 'version-probe'), [], 'no probe was tried')
  assert.equal((await statusOf(tw, 'raw'))?.kubernetesVersion, undefined)
})
