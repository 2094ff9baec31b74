/**
 * HTTP-head fuzz against the real `tower server` process: random and
 * mutated request heads, some padded to just under or over the head-size
 * limit, written in random splits to a proxy cluster port (with and without
 * a client certificate, so valid heads travel the whole request path to the
 * agent and its upstream) and to the agent endpoint.
 *
 * Every answer must be well-formed HTTP (a status line and headers, bodies
 * as framed) or no answer at all; every connection must be closed by the
 * server in bounded time once the client has sent its bytes; and the process
 * must stay alive. fast-check with a fixed seed (test/helpers/fuzz.ts).
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import tls from 'node:tls'
import { once } from 'node:events'
import fc from 'fast-check'
import { fuzzParams } from '../helpers/fuzz.ts'
import { startUpstream, type Upstream } from '../fixtures/upstream.ts'
import { TowerProcess, type ClusterInfo } from '../attacks/lib/tower-process.ts'
import { connectAgent } from '../attacks/lib/world.ts'
import type { Agent } from '@tower/agent'

/** --max-header-bytes of the fuzzed server: small, so heads around it are cheap. */
const MAX_HEADER_BYTES = 8192
/** The agent endpoint's head limit (fixed in the server). */
const AGENT_ENDPOINT_MAX_HEADER = 16 * 1024
/** After the client has sent everything and closed its side, the server must close within this, in ms. */
const CLOSE_BOUND_MS = 5000

let tower: TowerProcess
let cluster: ClusterInfo
let cert: { certPem: string, keyPem: string }
let up: Upstream
let agent: Agent

before(async () => {
  // accept-rate 0: admission refusals would hide what comes after them in the handshake checks
  tower = await TowerProcess.start({ flags: { 'max-header-bytes': MAX_HEADER_BYTES, 'accept-rate': 0 } })
  cluster = await tower.addCluster('fuzz')
  cert = await tower.callerCert('fuzz')
  up = await startUpstream()
  agent = await connectAgent(tower, cluster, up)
})
after(async () => {
  await agent?.stop()
  await up?.close()
  await tower?.stop()
})

const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/)
const anyText = fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 40 })
const method = fc.oneof(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'CONNECT', 'TRACE', 'get', 'PRI'), token, anyText)
const target = fc.oneof(
  fc.constantFrom('/', '/echo', '/api/v1/namespaces', '/tower/v1/connect', '/healthz', '*', 'http://169.254.169.254/', '//evil/x', '/echo?a=b#c', '/%00', '/../../etc/passwd'),
  fc.webPath(),
  anyText
)
const version = fc.oneof(fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/0.9', 'HTTP/1.1 ', 'http/1.1', 'HTTP/1.10'), anyText)
const headerName = fc.oneof(
  fc.constantFrom('Host', 'Content-Length', 'Transfer-Encoding', 'Connection', 'Upgrade', 'Authorization', 'Impersonate-User',
    'Expect', 'Sec-WebSocket-Key', 'Sec-WebSocket-Version', 'Sec-WebSocket-Protocol', 'tower-cluster', 'tower-agent-id', 'Te', 'Trailer'),
  token,
  anyText
)
const headerValue = fc.oneof(
  fc.constantFrom('0', '5', '-1', '99999999999999999999', 'chunked', 'gzip, chunked', 'close', 'keep-alive', 'Upgrade', 'websocket',
    '100-continue', '13', 'tower.yamux.v1', 'Bearer x', 'dGhlIHNhbXBsZSBub25jZQ==', 'fuzz', 'constructor', '__proto__'),
  anyText
)
const eol = fc.constantFrom('\r\n', '\r\n', '\r\n', '\n', '\r')

/** A request head (and maybe a body), as latin1 text. */
const head = fc.record({
  method,
  target,
  version,
  headers: fc.array(fc.tuple(headerName, fc.constantFrom(': ', ':', ' : ', ':\t'), headerValue), { maxLength: 8 }),
  eol,
  body: fc.oneof(fc.constant(''), anyText, fc.constant('0\r\n\r\n'), fc.constant('5\r\nhello\r\n0\r\n\r\n')),
  pipelined: fc.boolean()
}).map((h) => {
  const lines = [`${h.method} ${h.target} ${h.version}`, ...h.headers.map(([n, sep, v]) => `${n}${sep}${v}`)]
  const one = lines.join(h.eol) + h.eol + h.eol + h.body
  return h.pipelined ? one + 'GET /echo HTTP/1.1\r\nHost: x\r\n\r\n' : one
})

/**
 * Heads close to valid ones, where the bugs live: an agent handshake or a
 * caller request whose headers are each kept, dropped, duplicated or given a
 * hostile value.
 */
const hostileValue = fc.oneof({ weight: 1, arbitrary: headerValue }, { weight: 2, arbitrary: fc.constantFrom('constructor', '__proto__', 'toString', 'hasOwnProperty', 'fuzz', 'FUZZ', 'a'.repeat(64), '') })
// Mostly kept: a head with every other field intact reaches the deep checks.
const choice = fc.oneof({ weight: 24, arbitrary: fc.constant('keep') }, { weight: 1, arbitrary: fc.constantFrom('drop', 'twice') }, { weight: 2, arbitrary: fc.constant('replace') })
function nearValid (start: string, template: Array<[string, string]>): fc.Arbitrary<string> {
  return fc.tuple(
    fc.array(fc.tuple(choice, hostileValue), { minLength: template.length, maxLength: template.length }),
    fc.array(fc.tuple(headerName, headerValue), { maxLength: 3 })
  ).map(([choices, extra]) => {
    const lines = [start]
    template.forEach(([name, value], i) => {
      const [choice, other] = choices[i]!
      if (choice === 'keep') lines.push(`${name}: ${value}`)
      else if (choice === 'twice') lines.push(`${name}: ${value}`, `${name}: ${other}`)
      else if (choice === 'replace') lines.push(`${name}: ${other}`)
    })
    for (const [n, v] of extra) lines.push(`${n}: ${v}`)
    return lines.join('\r\n') + '\r\n\r\n'
  })
}
const agentHandshake = nearValid('GET /tower/v1/connect HTTP/1.1', [
  ['Host', 'localhost'], ['Upgrade', 'websocket'], ['Connection', 'Upgrade'], ['Sec-WebSocket-Version', '13'],
  ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='], ['Sec-WebSocket-Protocol', 'tower.yamux.v1'],
  ['tower-cluster', 'fuzz'], ['tower-agent-id', 'fuzzer'], ['Authorization', 'Bearer tower-agent_' + 'x'.repeat(43)]
])
const callerRequest = nearValid('POST /api/v1/namespaces/default/configmaps HTTP/1.1', [
  ['Host', 'localhost'], ['Content-Type', 'application/json'], ['Content-Length', '2'], ['Transfer-Encoding', 'chunked'],
  ['Connection', 'keep-alive'], ['Impersonate-User', 'system:admin'], ['Authorization', 'Bearer nope'], ['Expect', '100-continue']
]).map((h) => h + '{}')
const proxyHeads = fc.oneof(head, callerRequest, agentHandshake)
const endpointHeads = fc.oneof({ weight: 1, arbitrary: head }, { weight: 3, arbitrary: agentHandshake })

/** Mutations applied to the encoded head: often none, so near-valid heads stay near. */
type Mutation = { at: number, op: string, byte: number }
const mutations: fc.Arbitrary<Mutation[]> = fc.oneof({ weight: 3, arbitrary: fc.constant<Mutation[]>([]) }, {
  weight: 1,
  arbitrary: fc.array(fc.record({
    at: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
    op: fc.constantFrom('flip', 'insert', 'delete', 'truncate'),
    byte: fc.integer({ min: 0, max: 255 })
  }), { minLength: 1, maxLength: 4 })
})

/** Padding that brings the head near the size limit: none, just under, or just over. */
const padding = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.integer({ min: -64, max: 64 }) }
)

function mutate (bytes: Buffer, ms: Mutation[]): Buffer {
  let b = bytes
  for (const m of ms) {
    const i = Math.floor(m.at * b.length)
    if (m.op === 'flip') { b = Buffer.from(b); if (b.length > 0) b[i] ^= 1 << (m.byte & 7) } else if (m.op === 'insert') b = Buffer.concat([b.subarray(0, i), Buffer.from([m.byte]), b.subarray(i)])
    else if (m.op === 'delete') b = Buffer.concat([b.subarray(0, i), b.subarray(i + 1)])
    else b = b.subarray(0, Math.max(1, i))
  }
  return b
}

/** Inserts a padding header so the head's size is `limit + delta` (when delta is given). */
function pad (text: string, limit: number, delta: number): string {
  if (delta === 0) return text
  const end = text.indexOf('\r\n')
  if (end < 0) return text
  const headLen = text.indexOf('\r\n\r\n') >= 0 ? text.indexOf('\r\n\r\n') + 4 : text.length
  const fill = Math.max(0, limit + delta - headLen - 'X-Pad: \r\n'.length)
  return text.slice(0, end + 2) + `X-Pad: ${'p'.repeat(fill)}\r\n` + text.slice(end + 2)
}

/**
 * Checks that `bytes` is a sequence of well-formed HTTP/1.x responses (the
 * last possibly cut short by the server closing), and returns their
 * statuses. After a 101 the rest belongs to the upgraded protocol.
 */
function checkResponses (bytes: Buffer, isHead: boolean): number[] {
  const statuses: number[] = []
  let rest = bytes
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n')
    assert.ok(end > 0, `an incomplete or unframed response head: ${JSON.stringify(rest.subarray(0, 200).toString('latin1'))}`)
    const lines = rest.subarray(0, end).toString('latin1').split('\r\n')
    const m = /^HTTP\/1\.[01] ([1-5]\d\d)(?: [^\r\n]*)?$/.exec(lines[0]!)
    assert.ok(m !== null, `not an HTTP status line: ${JSON.stringify(lines[0])}`)
    const status = Number(m[1])
    statuses.push(status)
    const headers = new Map<string, string>()
    for (const line of lines.slice(1)) {
      const h = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/.exec(line)
      assert.ok(h !== null, `a malformed response header line: ${JSON.stringify(line)}`)
      headers.set(h[1]!.toLowerCase(), h[2]!)
    }
    rest = rest.subarray(end + 4)
    if (status === 101) break
    if (status === 204 || status === 304 || (status >= 100 && status < 200)) continue
    // An answer to HEAD has no body, unless the head was too broken to be taken for HEAD.
    if (isHead && (rest.length === 0 || rest.subarray(0, 7).toString('latin1') === 'HTTP/1.')) continue
    const cl = headers.get('content-length')
    if (cl !== undefined) {
      assert.match(cl, /^\d+$/, 'Content-Length is a number')
      assert.ok(rest.length >= Number(cl), `a body shorter than its Content-Length (${rest.length} < ${cl})`)
      rest = rest.subarray(Number(cl))
    } else if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) {
      for (;;) {
        const le = rest.indexOf('\r\n')
        if (le < 0) { rest = Buffer.alloc(0); break } // cut short by the close
        const size = parseInt(rest.subarray(0, le).toString('latin1'), 16)
        assert.ok(Number.isFinite(size), 'a chunk size line')
        rest = rest.subarray(Math.min(rest.length, le + 2 + size + 2))
        if (size === 0) break
      }
    } else {
      // no framing: the body runs to the close
      break
    }
  }
  return statuses
}

// TLS sessions to resume, per port and certificate: a resumed handshake is cheap, so more heads fit the budget.
const sessions = new Map<string, Buffer>()

/** Sends `bytes` in the given splits, then half-closes; resolves with everything the server sent. */
async function send (port: number, bytes: Buffer, splits: number[], withCert: boolean): Promise<Buffer> {
  const key = `${port}/${withCert}`
  const s = tls.connect({ host: '127.0.0.1', port, ca: tower.caPem, servername: 'localhost', session: sessions.get(key), ...(withCert ? { cert: cert.certPem, key: cert.keyPem } : {}) })
  s.once('session', (session: Buffer) => sessions.set(key, session))
  const chunks: Buffer[] = []
  s.on('data', (c: Buffer) => chunks.push(c))
  s.on('error', () => {})
  const closed = new Promise((resolve) => s.once('close', resolve))
  await Promise.race([new Promise((resolve) => s.once('secureConnect', resolve)), closed])
  const cuts = [...new Set(splits.map((f) => Math.floor(f * bytes.length)))].sort((a, b) => a - b)
  let at = 0
  for (const cut of [...cuts, bytes.length]) {
    if (cut <= at || s.destroyed) continue
    s.write(bytes.subarray(at, cut))
    at = cut
    await new Promise((resolve) => setImmediate(resolve))
  }
  // A complete head gets its answer before the half-close (node:http aborts a
  // request in flight when its client half-closes): wait for the first byte,
  // for at most 100 ms; this only decides whether a slow answer is read or
  // the request aborted, both of which the checks accept.
  let quiet: NodeJS.Timeout | undefined
  await Promise.race([new Promise((resolve) => s.once('data', resolve)), closed, new Promise((resolve) => { quiet = setTimeout(resolve, 100) })])
  clearTimeout(quiet)
  s.end()
  const timer = setTimeout(() => s.destroy(new Error('hung')), CLOSE_BOUND_MS)
  await closed
  clearTimeout(timer)
  assert.ok(s.errored?.message !== 'hung', `the server kept the connection open ${CLOSE_BOUND_MS} ms after the client finished`)
  return Buffer.concat(chunks)
}

let runs = 0
function property (heads: fc.Arbitrary<string>, port: () => number, limit: number, certs: fc.Arbitrary<boolean>): fc.IAsyncProperty<[string, Mutation[], number, number[], boolean]> {
  return fc.asyncProperty(heads, mutations, padding, fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }), certs, async (text, ms, delta, splits, withCert) => {
    runs++
    const bytes = mutate(Buffer.from(pad(text, limit, delta), 'latin1'), ms)
    const answer = await send(port(), bytes, splits, withCert)
    assert.ok(tower.alive(), `the server died: ${tower.exitInfo()}`)
    if (answer.length > 0) checkResponses(answer, /^HEAD /.test(bytes.toString('latin1')))
  })
}

test('fuzz: request heads on a proxy cluster port get well-formed answers and closed connections', async () => {
  runs = 0
  await fc.assert(property(proxyHeads, () => cluster.port, MAX_HEADER_BYTES, fc.boolean()), fuzzParams())
  console.log(`# ${runs} heads on a proxy port`)
  assert.ok(tower.alive(), tower.exitInfo())
})

test('fuzz: request heads on the agent endpoint get well-formed answers and closed connections', async () => {
  runs = 0
  await fc.assert(property(endpointHeads, () => tower.agentPort, AGENT_ENDPOINT_MAX_HEADER, fc.constant(false)), fuzzParams())
  console.log(`# ${runs} heads on the agent endpoint`)
  assert.ok(tower.alive(), tower.exitInfo())
})

test('fuzz: the server still serves after the fuzzing', async () => {
  const s = tls.connect({ host: '127.0.0.1', port: cluster.port, ca: tower.caPem, servername: 'localhost', cert: cert.certPem, key: cert.keyPem })
  s.on('error', () => {})
  await once(s, 'secureConnect')
  s.write('GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  const chunks: Buffer[] = []
  for await (const c of s) chunks.push(c as Buffer)
  assert.deepEqual(checkResponses(Buffer.concat(chunks), false), [200])
})
