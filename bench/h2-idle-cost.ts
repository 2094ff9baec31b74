/**
 * What Node itself charges for the two h2 streams that proxy mode holds per
 * idle h2 watch: the caller's stream on the server's cluster port (a server
 * stream) and the agent's stream to the kube-apiserver (a client stream).
 * It explains `bytes_per_idle_watch_h2`, as `tls-idle-cost.ts` explains
 * `bytes_per_idle_stream`. Plain node:http2 and nothing else: the server
 * uses the core API (no compatibility objects), answers each stream with a
 * head and one event line and never ends it; the client opens the streams
 * 200 at a time on sessions of 250 streams (the cluster port's
 * SETTINGS_MAX_CONCURRENT_STREAMS) and waits for each stream's event. Not
 * part of `npm run bench`; run it alone:
 *
 *   node bench/h2-idle-cost.ts [streams]   (default 10,000)
 *
 * Both processes start with Tower's GC settings (packages/cli/src/gc-flags.ts),
 * so the young generation behaves as in Tower's processes; `--gc off` leaves
 * V8's defaults. RSS of each process is read before the first stream and 2 s
 * after the last event, without forcing a GC, as the bench's idle section
 * does. The server's growth per stream is what a server stream costs, the
 * client's what a client stream costs (plus the few bytes of its own list of
 * streams); their sum is the floor for any h2-to-h2 relay built on node:http2.
 */
import http2 from 'node:http2'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as delay } from 'node:timers/promises'
import { GC_FLAGS, GC_LAUNCH_FLAGS } from '../packages/cli/src/gc-flags.ts'
import { writeBenchPki } from './lib/pki.ts'
import { rssBytes } from './lib/proc.ts'

const SELF = fileURLToPath(import.meta.url)
// The cluster port's default (packages/server/src/h2-limits.ts); client-go opens another session when one is full.
const PER_SESSION = 250
const OPEN_AT_ONCE = 200
const SETTLE_MS = 2000
const EVENT = '{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"x"}}}\n'

interface Measured { streams: number, bytesPerStream: number }

async function client (port: number, n: number, caFile: string): Promise<void> {
  const ca = readFileSync(caFile)
  const sessions: http2.ClientHttp2Session[] = []
  for (let i = 0; i < Math.ceil(n / PER_SESSION); i++) {
    const s = http2.connect(`https://127.0.0.1:${port}`, { ca, servername: 'localhost' })
    await once(s, 'remoteSettings')
    sessions.push(s)
  }
  process.send!({ ready: true })
  // the server reads its own RSS before it says go
  await once(process, 'message')
  const before = rssBytes(process.pid)
  const held: http2.ClientHttp2Stream[] = []
  const one = async (i: number): Promise<void> => await new Promise<void>((resolve, reject) => {
    const s = sessions[Math.floor(i / PER_SESSION)]!.request({
      ':path': `/api/v1/namespaces/ns-${i % 100}/configmaps?watch=true&resourceVersion=1`,
      accept: 'application/json',
      'user-agent': 'h2-idle-cost/1.0'
    }, { endStream: true })
    s.once('data', () => { resolve() })
    s.once('error', reject)
    held.push(s)
  })
  for (let i = 0; i < n; i += OPEN_AT_ONCE) await Promise.all(Array.from({ length: Math.min(OPEN_AT_ONCE, n - i) }, (_, k) => one(i + k)))
  await delay(SETTLE_MS)
  process.send!({ streams: held.length, bytesPerStream: (rssBytes(process.pid) - before) / held.length } satisfies Measured)
  setInterval(() => {}, 60_000)
}

async function server (n: number, dir: string, execArgv: string[]): Promise<void> {
  const pki = writeBenchPki(dir)
  const srv = http2.createSecureServer({ cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile), settings: { maxConcurrentStreams: PER_SESSION } })
  let open = 0
  srv.on('stream', (stream) => {
    stream.respond({ ':status': 200, 'content-type': 'application/json' })
    stream.write(EVENT)
    stream.on('error', () => {})
    open++
  })
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const port = (srv.address() as { port: number }).port
  const c = fork(SELF, ['--role', 'client', '--port', String(port), '--streams', String(n), '--ca', pki.caFile], { execArgv })
  await once(c, 'message')
  await delay(500)
  const before = rssBytes(process.pid)
  c.send('go')
  const [clientSide] = await once(c, 'message') as [Measured]
  // the client sent its figure 2 s after its last event: this side has settled as long
  const after = rssBytes(process.pid)
  c.kill()
  process.send!({ server: { streams: open, bytesPerStream: (after - before) / open }, client: clientSide })
  process.exit(0)
}

const { values } = parseArgs({
  allowPositionals: true,
  options: { role: { type: 'string' }, port: { type: 'string' }, streams: { type: 'string' }, ca: { type: 'string' }, dir: { type: 'string' }, gc: { type: 'string', default: 'on' } }
})
const positional = process.argv.slice(2).find((a) => /^\d+$/.test(a))
const n = Number(values.streams ?? positional ?? 10_000)
if (!Number.isInteger(n) || n < 1) throw new Error(`streams must be a positive integer, got ${values.streams ?? positional}`)

if (values.role === 'client') {
  await client(Number(values.port), n, values.ca!)
} else if (values.role === 'server') {
  await server(n, values.dir!, process.execArgv)
} else {
  if (values.gc !== 'on' && values.gc !== 'off') throw new Error('--gc must be on or off')
  // V8 takes the run-time flags on the command line as well
  const execArgv = values.gc === 'on' ? [...GC_LAUNCH_FLAGS, ...GC_FLAGS, ...process.execArgv] : [...process.execArgv]
  const child = fork(SELF, ['--role', 'server', '--streams', String(n), '--dir', mkdtempSync(join(os.tmpdir(), 'tower-h2-idle-'))], { execArgv })
  const [r] = await once(child, 'message') as [{ server: Measured, client: Measured }]
  const s = r.server.bytesPerStream
  const c = r.client.bytesPerStream
  console.log(`GC settings ${values.gc}; ${r.server.streams} server streams, ${r.client.streams} client streams on ${Math.ceil(n / PER_SESSION)} sessions`)
  console.log(`server stream: ${Math.round(s)} B of RSS each`)
  console.log(`client stream: ${Math.round(c)} B of RSS each`)
  console.log(`both (the floor for one relayed h2 watch): ${Math.round(s + c)} B`)
}
