/**
 * Server-side cost of an idle HTTP/2 watch in proxy mode (issue 12, "an idle
 * watch holds almost nothing"). Not part of `npm run bench`; run it alone:
 *
 *   node --expose-gc --experimental-strip-types bench/h2-idle-watch.ts [watches] [sessions] [hop|http1]
 *
 * This process runs only the Tower server (TowerServer on a FileRegistry in
 * a temp dir). A child process runs both of its peers: an agent (a mux
 * session over the real agent endpoint, answering every relayed request
 * with a response head and a body that never ends, like an idle watch) and
 * an h2 caller that opens `watches` watches spread over `sessions` h2
 * sessions (client-go's pattern: a handful of connections). With `hop`
 * (the default, what a current agent announces) the agent answers hop
 * frames; with `http1` it does not announce them and the requests cross as
 * HTTP/1.1 text, as with an older agent. The server's
 * heap (after GC) and RSS are read before and after, so the figures are the
 * server's alone: the h2 stream, the pooled mux stream, the hop exchange
 * (or the http.Agent request/response and parser objects), and the timers.
 *
 * With TOWER_BENCH_SNAPSHOT=1 it also takes a heap snapshot before and after
 * and prints the 15 object kinds that grew most, in bytes per watch.
 */
import { fork } from 'node:child_process'
import fs from 'node:fs'
import v8 from 'node:v8'
import http from 'node:http'
import http2 from 'node:http2'
import os from 'node:os'
import path from 'node:path'
import { once } from 'node:events'
import type { Duplex } from 'node:stream'
import { pino } from 'pino'
import { Session } from '@tower/mux'
import { AGENT_PATH, FEATURE_HOP_FRAME, HEADER_AGENT_ID, HEADER_CLUSTER, HEADER_FEATURES, HopDecoder, SUBPROTOCOL, encodeDataHeader, encodeEnd, encodeResponseHead, readPreamble, requestUpgrade, sessionOptions, wsStream } from '@tower/transport'
import { FileRegistry, TowerServer } from '@tower/server'

const WATCHES = Number(process.argv[2] ?? 1000)
const SNAPSHOT = process.env.TOWER_BENCH_SNAPSHOT === '1'

// Self size per node name (constructor or type) in a heap snapshot.
function kinds (file: string): Map<string, number> {
  const snap = JSON.parse(fs.readFileSync(file, 'utf8')) as { snapshot: { meta: { node_fields: string[], node_types: [string[]] } }, nodes: number[], strings: string[] }
  const fields = snap.snapshot.meta.node_fields
  const width = fields.length
  const typeAt = fields.indexOf('type')
  const nameAt = fields.indexOf('name')
  const sizeAt = fields.indexOf('self_size')
  const types = snap.snapshot.meta.node_types[0]
  const out = new Map<string, number>()
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt]!]!
    const key = type === 'object' || type === 'closure' ? `${type}:${snap.strings[snap.nodes[i + nameAt]!]!}` : type
    out.set(key, (out.get(key) ?? 0) + snap.nodes[i + sizeAt]!)
  }
  return out
}
const SESSIONS = Number(process.argv[3] ?? 4)
const HOP = process.argv[4] !== 'http1'

interface ChildArgs { agentPort: number, clusterPort: number, caPem: string, joinToken: string, callerToken: string, watches: number, sessions: number, hop: boolean }

// The agent's side of a hop stream: /version answered whole, anything else a head and a body that never ends.
function hopAnswer (s: Duplex): void {
  const decoder = new HopDecoder()
  let path = ''
  s.on('data', (chunk: Buffer) => {
    for (const m of decoder.push(chunk)) {
      if (m.type === 'request-head') path = m.head.path
      if (m.type !== 'end') continue
      if (path === '/version') {
        const body = Buffer.from('{"gitVersion":"v1.36.3"}')
        s.write(encodeResponseHead({ status: 200, headers: ['content-type', 'application/json', 'content-length', String(body.length)], body: true }))
        s.write(encodeDataHeader(body.length))
        s.write(body)
        s.write(encodeEnd())
      } else {
        s.write(encodeResponseHead({ status: 200, headers: ['content-type', 'application/json'], body: true }))
      }
    }
  })
}

async function child (a: ChildArgs): Promise<void> {
  const { socket, head } = await requestUpgrade({
    url: new URL(`wss://127.0.0.1:${a.agentPort}${AGENT_PATH}`),
    protocol: SUBPROTOCOL,
    headers: { authorization: `Bearer ${a.joinToken}`, [HEADER_CLUSTER]: 'bench', [HEADER_AGENT_ID]: 'bench-agent', ...(a.hop ? { [HEADER_FEATURES]: FEATURE_HOP_FRAME } : {}) },
    ca: a.caPem,
    servername: 'localhost',
    timeoutMs: 5000
  }).done
  const session = new Session(wsStream(socket, { role: 'client', head }), { ...sessionOptions(), client: false })
  const upstream = http.createServer((req, res) => {
    if (req.url === '/version') { res.end('{"gitVersion":"v1.36.3"}'); return }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.flushHeaders()
  })
  upstream.requestTimeout = 0
  session.on('stream', (s: Duplex) => {
    s.on('error', () => {})
    readPreamble(s, 5000).then((p) => {
      if (p.kind === 'hframe') hopAnswer(s)
      else upstream.emit('connection', s)
    }, () => s.destroy())
  })
  process.send?.({ kind: 'agent' })
  await once(process, 'message')
  const clients = Array.from({ length: a.sessions }, () => {
    const c = http2.connect(`https://127.0.0.1:${a.clusterPort}`, { ca: a.caPem, servername: 'localhost', settings: { initialWindowSize: 65535 } })
    c.on('error', () => {})
    return c
  })
  await Promise.all(Array.from({ length: a.watches }, async (_, i) => {
    const req = clients[i % clients.length]!.request({ ':path': `/api/v1/configmaps?watch=1&n=${i}`, authorization: `Bearer ${a.callerToken}` })
    req.on('error', () => {})
    req.end()
    await once(req, 'response')
  }))
  process.send?.({ kind: 'watching' })
  await once(process, 'message')
  for (const c of clients) c.destroy()
  session.destroy()
  process.exit(0)
}

function heap (): { heap: number, external: number, rss: number } {
  for (let i = 0; i < 4; i++) globalThis.gc?.()
  const m = process.memoryUsage()
  return { heap: m.heapUsed, external: m.external, rss: m.rss }
}

async function parent (): Promise<void> {
  if (globalThis.gc === undefined) throw new Error('run with --expose-gc')
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-h2-idle-'))
  const logger = pino({ level: 'error' })
  const registry = await FileRegistry.open({ stateDir: path.join(stateDir, 'state'), server: { advertiseHost: '127.0.0.1', portRange: '0' }, logger })
  const server = new TowerServer(registry, { listenHost: '127.0.0.1', listenPort: 0, clusterHost: '127.0.0.1', drainTimeoutMs: 200, logger })
  await server.start()
  const { token: joinToken } = await registry.add('bench')
  await server.synced()
  const { token: callerToken } = await registry.issueCallerToken('bench', { user: 'bench', groups: [] })
  const args: ChildArgs = { agentPort: server.agentPort, clusterPort: server.clusterPort('bench')!, caPem: registry.ca.certPem, joinToken, callerToken, watches: WATCHES, sessions: SESSIONS, hop: HOP }
  const proc = fork(import.meta.filename, ['--child', JSON.stringify(args)], { execArgv: ['--experimental-strip-types', '--no-warnings'] })
  const next = async (kind: string): Promise<void> => {
    const [msg] = await once(proc, 'message') as [{ kind: string }]
    if (msg.kind !== kind) throw new Error(`child said ${msg.kind}, expected ${kind}`)
  }
  await next('agent')
  while (server.tunnels.count('bench') === 0) await new Promise((resolve) => setTimeout(resolve, 10))
  // Let the version probe and session set-up settle before the baseline.
  await new Promise((resolve) => setTimeout(resolve, 500))
  const before = heap()
  const snapBefore = SNAPSHOT ? v8.writeHeapSnapshot(path.join(stateDir, 'before.heapsnapshot')) : ''
  proc.send({ kind: 'go' })
  await next('watching')
  const after = heap()
  if (SNAPSHOT) {
    const a = kinds(snapBefore)
    const b = kinds(v8.writeHeapSnapshot(path.join(stateDir, 'after.heapsnapshot')))
    const grown = [...b].map(([k, v]) => [k, (v - (a.get(k) ?? 0)) / WATCHES] as const).sort((x, y) => y[1] - x[1]).slice(0, 15)
    for (const [k, v] of grown) console.log(`${Math.round(v).toString().padStart(6)} B/watch  ${k}`)
  }
  const per = (k: keyof typeof before): number => Math.round((after[k] - before[k]) / WATCHES)
  const perWatch = { heap: per('heap'), external: per('external'), rss: per('rss') }
  console.log(JSON.stringify({ hop: HOP ? 'hframe' : 'http1', watches: WATCHES, sessions: SESSIONS, connections: server.clusterConnections('bench'), serverBytesPerIdleWatch: perWatch }))
  proc.send({ kind: 'done' })
  await once(proc, 'exit')
  await server.stop()
  fs.rmSync(stateDir, { recursive: true, force: true })
}

if (process.argv[2] === '--child') await child(JSON.parse(process.argv[3]!) as ChildArgs)
else await parent()
