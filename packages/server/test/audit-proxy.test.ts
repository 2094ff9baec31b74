/**
 * The audit log on real cluster ports: a real TowerServer with its
 * ClusterListeners, an agent session dialled over the real agent endpoint,
 * and behind it a node:http server standing in for the agent's re-origin
 * (the server package cannot import @tower/agent; the e2e test runs the
 * real agent against a real kube-apiserver). Records go to an in-memory sink.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'
import { once } from 'node:events'
import type { Duplex } from 'node:stream'
import { readPreamble } from '@tower/transport'
import { AuditLog, type AuditEvent } from '../src/audit.ts'
import type { AuditSink } from '../src/audit-sink.ts'
import { issueKubeconfigCredential } from '../src/kubeconfig.ts'
import { dialAgent, startServer, until, type TestAgent, type TestServer } from './helpers.ts'

type After = { after: (fn: () => unknown) => void }

class MemorySink implements AuditSink {
  readonly lines: string[] = []
  dropped = 0
  write (line: string): boolean {
    this.lines.push(line)
    return true
  }

  async close (): Promise<void> {}

  get events (): AuditEvent[] { return this.lines.map((l) => JSON.parse(l) as AuditEvent) }
}

interface Rig {
  ts: TestServer
  sink: MemorySink
  port: number
  agent: TestAgent
  upstream: http.Server
  /** Audit-ID headers the upstream saw, in order. */
  auditIds: string[]
  token: string
}

async function rig (t: After, cluster = 'au', mode: 'proxy' | 'passthrough' = 'proxy'): Promise<Rig> {
  const sink = new MemorySink()
  const ts = await startServer(t, { audit: new AuditLog({ level: 'Metadata', sink, logger: (await import('pino')).pino({ level: 'silent' }) }) }, 'warn')
  const { token: joinToken } = await ts.registry.add(cluster, mode === 'proxy' ? { impersonate: true } : { mode })
  await ts.server.synced()
  const port = ts.server.clusterPort(cluster)!
  const agent = await dialAgent(ts, cluster, joinToken)
  const upstream = http.createServer()
  const auditIds: string[] = []
  const front = http.createServer((req, res) => {
    if (req.url === '/version') { res.end('{"gitVersion":"v1.36.3"}'); return }
    auditIds.push(String(req.headers['audit-id']))
    upstream.emit('request', req, res)
  })
  front.on('upgrade', (req, socket, head) => {
    auditIds.push(String(req.headers['audit-id']))
    upstream.emit('upgrade', req, socket, head)
  })
  agent.session.on('stream', (s: Duplex) => {
    s.on('error', () => {})
    readPreamble(s, 5000).then(() => { if (mode === 'passthrough') s.pipe(s); else front.emit('connection', s) }, () => s.destroy())
  })
  t.after(() => agent.session.destroy())
  await until(() => ts.server.tunnels.count(cluster) === 1, 5000, 'agent registered')
  const token = mode === 'proxy' ? (await ts.registry.issueCallerToken(cluster, { user: 'alice', groups: ['dev'] })).token : ''
  return { ts, sink, port, agent, upstream, auditIds, token }
}

function h1 (r: Rig, path: string, headers: Record<string, string>, opts: https.RequestOptions = {}): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: r.port, path, headers, ca: r.ts.registry.ca.certPem, servername: 'localhost', agent: false, ...opts }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

async function records (r: Rig, n: number): Promise<AuditEvent[]> {
  await until(() => r.sink.lines.length >= n, 5000, `${n} audit records`)
  // Anything more would arrive with the closes already seen.
  await new Promise((resolve) => setImmediate(resolve))
  return r.sink.events
}

test('HTTP/1.1: exactly one record per request, with user, verb, code, object, cluster, agent and byte counts; the agent gets Tower\'s Audit-ID', async (t) => {
  const r = await rig(t)
  r.upstream.on('request', (req, res) => {
    req.resume()
    req.on('end', () => res.end(JSON.stringify({ kind: 'PodList', items: [] })))
  })
  const a = await h1(r, '/api/v1/namespaces/default/pods?limit=5&token=querysecret', { authorization: `Bearer ${r.token}`, 'user-agent': 'kubectl/v1.32', 'audit-id': 'forged-by-caller' })
  assert.equal(a.status, 200)
  const [e, ...more] = await records(r, 1)
  assert.equal(more.length, 0)
  assert.equal(e!.kind, 'Event')
  assert.equal(e!.apiVersion, 'audit.k8s.io/v1')
  assert.equal(e!.level, 'Metadata')
  assert.equal(e!.stage, 'ResponseComplete')
  assert.equal(e!.verb, 'list')
  assert.deepEqual(e!.user, { username: 'alice', groups: ['dev'] })
  assert.deepEqual(e!.responseStatus, { code: 200 })
  assert.deepEqual(e!.objectRef, { resource: 'pods', namespace: 'default', apiGroup: '', apiVersion: 'v1' })
  assert.equal(e!.requestURI, '/api/v1/namespaces/default/pods?limit=5&token=REDACTED')
  assert.deepEqual(e!.sourceIPs, ['127.0.0.1'])
  assert.equal(e!.userAgent, 'kubectl/v1.32')
  assert.equal(e!.tower.cluster, 'au')
  assert.equal(e!.tower.agentId, 'agent-1')
  assert.equal(e!.tower.mode, 'proxy')
  assert.equal(e!.tower.protocol, 'http/1.1')
  assert.equal(e!.tower.bytesOut, a.body.length)
  assert.ok(e!.tower.latencyMs >= 0)
  assert.match(e!.auditID, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  assert.deepEqual(r.auditIds, [e!.auditID])
  assert.ok(Date.parse(e!.stageTimestamp) >= Date.parse(e!.requestReceivedTimestamp))
  assert.match(e!.stageTimestamp, /\.\d{6}Z$/)
  // Ten more requests: ten more records, each its own auditID.
  for (let i = 0; i < 10; i++) assert.equal((await h1(r, `/api/v1/namespaces/default/pods/p${i}`, { authorization: `Bearer ${r.token}` })).status, 200)
  const all = await records(r, 11)
  assert.equal(all.length, 11)
  assert.equal(new Set(all.map((x) => x.auditID)).size, 11)
  assert.deepEqual(all.slice(1).map((x) => x.objectRef?.name), [...Array(10).keys()].map((i) => `p${i}`))
  assert.ok(all.slice(1).every((x) => x.verb === 'get'))
})

test('h2: one record per stream, protocol h2; a watch gets ResponseStarted when its head is sent and ResponseComplete at its end', async (t) => {
  const r = await rig(t)
  let endWatch: (() => void) | undefined
  r.upstream.on('request', (req, res) => {
    if (req.url!.includes('watch=true')) {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write('{"type":"ADDED"}\n')
      endWatch = () => res.end()
      return
    }
    res.end('{}')
  })
  const session = http2.connect(`https://127.0.0.1:${r.port}`, { ca: r.ts.registry.ca.certPem, servername: 'localhost' })
  t.after(() => session.destroy())
  const get = session.request({ ':path': '/apis/apps/v1/namespaces/ns1/deployments/web', authorization: `Bearer ${r.token}` })
  get.end()
  get.resume()
  await once(get, 'end')
  const [plain] = await records(r, 1)
  assert.equal(plain!.tower.protocol, 'h2')
  assert.equal(plain!.verb, 'get')
  assert.equal(plain!.stage, 'ResponseComplete')
  assert.deepEqual(plain!.responseStatus, { code: 200 })
  assert.deepEqual(plain!.user, { username: 'alice', groups: ['dev'] })
  assert.deepEqual(plain!.objectRef, { resource: 'deployments', namespace: 'ns1', name: 'web', apiGroup: 'apps', apiVersion: 'v1' })

  const watch = session.request({ ':path': '/api/v1/namespaces/default/pods?watch=true', authorization: `Bearer ${r.token}` })
  watch.end()
  await once(watch, 'data')
  const started = await records(r, 2)
  assert.equal(started.length, 2)
  assert.equal(started[1]!.stage, 'ResponseStarted')
  assert.equal(started[1]!.verb, 'watch')
  assert.deepEqual(started[1]!.responseStatus, { code: 200 })
  endWatch!()
  watch.resume()
  await once(watch, 'end')
  const all = await records(r, 3)
  assert.equal(all.length, 3)
  assert.equal(all[2]!.stage, 'ResponseComplete')
  assert.equal(all[2]!.auditID, started[1]!.auditID)
  assert.equal(all[2]!.tower.bytesOut, '{"type":"ADDED"}\n'.length)
  assert.deepEqual(r.auditIds.slice(-1), [all[2]!.auditID])
})

test('HTTP/1.1 watch: two records with one auditID', async (t) => {
  const r = await rig(t)
  r.upstream.on('request', (_req, res) => {
    res.writeHead(200)
    res.end('{"type":"ADDED"}\n')
  })
  await h1(r, '/api/v1/watch/namespaces/default/configmaps', { authorization: `Bearer ${r.token}` })
  const all = await records(r, 2)
  assert.deepEqual(all.map((e) => e.stage), ['ResponseStarted', 'ResponseComplete'])
  assert.equal(all[0]!.auditID, all[1]!.auditID)
  assert.ok(all.every((e) => e.verb === 'watch'))
})

test('refused callers are audited with no user: a bad token (401), over HTTP/1.1 and h2; a cluster without agent (503)', async (t) => {
  const r = await rig(t)
  r.upstream.on('request', (_req, res) => res.end('{}'))
  assert.equal((await h1(r, '/api/v1/pods', { authorization: 'Bearer not-a-caller-token' })).status, 401)
  const session = http2.connect(`https://127.0.0.1:${r.port}`, { ca: r.ts.registry.ca.certPem, servername: 'localhost' })
  t.after(() => session.destroy())
  const s = session.request({ ':path': '/api/v1/nodes', authorization: 'Bearer wrong' })
  s.end()
  s.resume()
  await once(s, 'close')
  const [one, two] = await records(r, 2)
  for (const e of [one!, two!]) {
    assert.equal(e.user, undefined)
    assert.deepEqual(e.responseStatus, { code: 401 })
    assert.equal(e.stage, 'ResponseComplete')
  }
  assert.deepEqual([one!.tower.protocol, two!.tower.protocol], ['http/1.1', 'h2'])
  assert.equal(r.auditIds.length, 0, 'nothing refused reached the agent')

  r.agent.session.destroy()
  await until(() => r.ts.server.tunnels.count('au') === 0, 5000, 'agent gone')
  assert.equal((await h1(r, '/api/v1/pods', { authorization: `Bearer ${r.token}` })).status, 503)
  const all = await records(r, 3)
  assert.equal(all.length, 3)
  assert.deepEqual(all[2]!.responseStatus, { code: 503 })
  assert.deepEqual(all[2]!.user, { username: 'alice', groups: ['dev'] })
  assert.equal(all[2]!.tower.agentId, undefined)
})

test('an exec upgrade: ResponseStarted at the 101, ResponseComplete at close, verb connect, the connection\'s bytes', async (t) => {
  const r = await rig(t)
  r.upstream.on('upgrade', (_req: http.IncomingMessage, socket: Duplex) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n')
    socket.on('data', (d: Buffer) => socket.write(d))
    socket.on('end', () => socket.end())
  })
  const c = tls.connect({ host: '127.0.0.1', port: r.port, ca: r.ts.registry.ca.certPem, servername: 'localhost' })
  await once(c, 'secureConnect')
  c.write(`POST /api/v1/namespaces/default/pods/p/exec?command=sh&stdin=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${r.token}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n`)
  let got = ''
  c.setEncoding('latin1')
  c.on('data', (d: string) => { got += d })
  await until(() => got.includes('\r\n\r\n'), 5000, '101')
  const [started] = await records(r, 1)
  assert.equal(started!.stage, 'ResponseStarted')
  assert.deepEqual(started!.responseStatus, { code: 101 })
  assert.equal(started!.verb, 'connect')
  assert.equal(started!.objectRef?.subresource, 'exec')
  assert.equal(started!.requestURI, '/api/v1/namespaces/default/pods/p/exec?command=sh&stdin=true')
  c.write('x'.repeat(1000))
  await until(() => got.length >= got.indexOf('\r\n\r\n') + 4 + 1000, 5000, 'echo')
  c.end()
  await once(c, 'close')
  const all = await records(r, 2)
  assert.equal(all.length, 2)
  const done = all[1]!
  assert.equal(done.stage, 'ResponseComplete')
  assert.equal(done.auditID, started!.auditID)
  assert.deepEqual(done.responseStatus, { code: 101 })
  assert.deepEqual(done.user, { username: 'alice', groups: ['dev'] })
  assert.equal(done.tower.agentId, 'agent-1')
  assert.ok(done.tower.bytesIn >= 1000, `bytesIn ${done.tower.bytesIn}`)
  assert.ok(done.tower.bytesOut >= 1000, `bytesOut ${done.tower.bytesOut}`)
  assert.deepEqual(r.auditIds, [done.auditID])
})

test('passthrough: one record per connection at close, verb connect, bytes both ways', async (t) => {
  const r = await rig(t, 'pt', 'passthrough')
  const c = net.connect({ host: '127.0.0.1', port: r.port })
  await once(c, 'connect')
  c.write('y'.repeat(5000))
  let n = 0
  c.on('data', (d: Buffer) => { n += d.length })
  await until(() => n >= 5000, 5000, 'echo')
  c.end()
  await once(c, 'close')
  const [e, ...more] = await records(r, 1)
  assert.equal(more.length, 0)
  assert.equal(e!.stage, 'ResponseComplete')
  assert.equal(e!.verb, 'connect')
  assert.equal(e!.tower.mode, 'passthrough')
  assert.equal(e!.tower.protocol, 'tcp')
  assert.equal(e!.tower.cluster, 'pt')
  assert.equal(e!.tower.agentId, 'agent-1')
  assert.equal(e!.tower.bytesIn, 5000)
  assert.equal(e!.tower.bytesOut, 5000)
  assert.equal(e!.user, undefined)
})

test('no secret in any record: bearer tokens, query tokens, client certificate and key bytes', async (t) => {
  const r = await rig(t)
  r.upstream.on('request', (req, res) => { req.resume(); res.end('{}') })
  const issued = await issueKubeconfigCredential(r.ts.registry, { cluster: 'au', user: 'bob', serverHost: '127.0.0.1' })
  const field = (name: string): string => Buffer.from(new RegExp(`${name}: (\\S+)`).exec(issued.yaml)![1]!, 'base64').toString('utf8')
  const cert = field('client-certificate-data')
  const key = field('client-key-data')
  const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.c2lnbmF0dXJlc2VjcmV0'
  await h1(r, `/api/v1/pods?token=${r.token}&access_token=qq-secret-1&password=pw-secret-2&x=${jwt}`, { authorization: `Bearer ${r.token}`, cookie: 'session=cookie-secret-3' })
  await h1(r, '/api/v1/pods?watch=false', { authorization: `Bearer ${r.token}`, 'proxy-authorization': 'Basic cHJveHktc2VjcmV0' })
  const certCall = await h1(r, `/api/v1/namespaces/default/secrets?secret=${encodeURIComponent(key.slice(40, 80))}`, {}, { cert, key })
  assert.equal(certCall.status, 200)
  const session = http2.connect(`https://127.0.0.1:${r.port}`, { ca: r.ts.registry.ca.certPem, servername: 'localhost', cert, key })
  t.after(() => session.destroy())
  const s = session.request({ ':path': `/api/v1/pods?token=${r.token}`, authorization: `Bearer ${r.token}`, cookie: 'c=cookie-secret-4' })
  s.end()
  s.resume()
  await once(s, 'close')
  const all = await records(r, 4)
  assert.equal(all.length, 4)
  const certRecord = all[2]!
  assert.equal(certRecord.user?.username, 'bob')
  const text = r.sink.lines.join('\n')
  const keyBody = key.split('\n').filter((l) => l !== '' && !l.startsWith('-----'))
  const certBody = cert.split('\n').filter((l) => l !== '' && !l.startsWith('-----'))
  const secrets = [r.token, r.token.slice(13), 'qq-secret-1', 'pw-secret-2', jwt, 'cookie-secret-3', 'cookie-secret-4', 'cHJveHktc2VjcmV0', key.slice(40, 80), encodeURIComponent(key.slice(40, 80)), ...keyBody, ...certBody]
  for (const secret of secrets) assert.ok(!text.includes(secret), `a record contains ${secret.slice(0, 12)}…`)
  assert.ok(!/authorization|cookie|bearer/i.test(text), 'no credential header in any record')
})

test('an h2 stream that closes after its session let go of the socket: the record is written with the address read at arrival', async () => {
  // node:http2's session socket proxy throws ERR_HTTP2_SOCKET_UNBOUND once the session is destroyed;
  // a stream's 'close' can come after that (curl hanging up after a 401 did it to the CLI).
  const sink = new MemorySink()
  const audit = new AuditLog({ level: 'Metadata', sink, logger: (await import('pino')).pino({ level: 'silent' }) })
  let bound = true
  const socket = new Proxy({}, { get: (_t, key) => { if (!bound) throw Object.assign(new Error('unbound'), { code: 'ERR_HTTP2_SOCKET_UNBOUND' }); return key === 'remoteAddress' ? '127.0.0.9' : undefined } })
  const entry = audit.stream('c', { socket: socket as Duplex, headers: {}, method: 'GET', url: '/api' })
  bound = false
  // What the stream's relay does when the stream closes.
  entry!.complete(401)
  const [e] = sink.events
  assert.deepEqual(e!.sourceIPs, ['127.0.0.9'])
  assert.deepEqual(e!.responseStatus, { code: 401 })
})

test('an h2 caller that hangs up right after its answer: the record is still written, with its address, and the server lives on', async (t) => {
  const r = await rig(t)
  // The watch stays open: the caller's connection goes while its stream is in flight.
  r.upstream.on('request', (req, res) => {
    if (!req.url!.includes('watch=true')) { res.end('{}'); return }
    res.writeHead(200)
    res.write('{"type":"ADDED"}\n')
  })
  for (const authorization of ['Bearer wrong', `Bearer ${r.token}`]) {
    const session = http2.connect(`https://127.0.0.1:${r.port}`, { ca: r.ts.registry.ca.certPem, servername: 'localhost' })
    session.on('error', () => {})
    const s = session.request({ ':path': '/api/v1/namespaces?watch=true', authorization })
    s.on('error', () => {})
    s.end()
    await once(s, 'response')
    // Like curl after a 401: the TCP connection goes before the server's stream has closed.
    session.socket.destroy()
    await once(session, 'close')
  }
  const all = await records(r, 3)
  assert.deepEqual(all.map((e) => [e.stage, e.responseStatus?.code]), [['ResponseComplete', 401], ['ResponseStarted', 200], ['ResponseComplete', 200]])
  for (const e of all) assert.deepEqual(e.sourceIPs, ['127.0.0.1'])
  assert.equal((await h1(r, '/api/v1/pods', { authorization: `Bearer ${r.token}` })).status, 200)
})
