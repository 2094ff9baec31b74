/**
 * Micro-benchmark for the proxy-mode hop across the tunnel (issue 12, "the
 * hop"): is a compact header frame worth replacing today's HTTP/1.1 text,
 * which the agent parses again? Not part of `npm run bench`; run it alone:
 *
 *   node --expose-gc --experimental-strip-types bench/hop-frame.ts [requests] [concurrency] [watches]
 *
 * Both variants run over the same in-memory mux session pair (Session over
 * a duplexPair), so the only difference is what a request costs on the hop:
 *
 * - `http1`: today's path. The server side sends through a keep-alive
 *   http.Agent whose connections are mux streams; the agent side is a
 *   node:http server fed those streams (llhttp parses the head, builds
 *   IncomingMessage/ServerResponse, and the client parses the answer).
 * - `frame`: a length-prefixed binary head ([u32 length][JSON head]), the
 *   body as length-prefixed chunks and a zero-length end chunk, on pooled
 *   mux streams: no HTTP parser on either side.
 *
 * It prints requests per second for small GETs (a /version-sized answer) and
 * the heap each idle watch holds on the hop (both ends, beyond the mux stream
 * that both variants hold), measured over `watches` watches whose response
 * head was sent and whose body never ends.
 */
import http from 'node:http'
import { duplexPair, type Duplex } from 'node:stream'
import { Session } from '@tower/mux'
import { sessionOptions } from '@tower/transport'

const REQUESTS = Number(process.argv[2] ?? 20_000)
const CONCURRENCY = Number(process.argv[3] ?? 32)
const WATCHES = Number(process.argv[4] ?? 1000)
const BODY = JSON.stringify({ major: '1', minor: '36', gitVersion: 'v1.36.3', gitCommit: 'a'.repeat(40), gitTreeState: 'clean', buildDate: '2026-11-01T00:00:00Z', goVersion: 'go1.26.8', compiler: 'gc', platform: 'linux/amd64' })
// What a client-go GET carries after Tower's rewriting.
const HEADERS = ['Host', '127.0.0.1:6443', 'User-Agent', 'kubectl/v1.32.0 (linux/amd64) kubernetes/abcdef0', 'Accept', 'application/json, */*', 'Accept-Encoding', 'gzip', 'Impersonate-User', 'alice', 'Impersonate-Group', 'devs']

function sessions (): { near: Session, far: Session } {
  const [a, b] = duplexPair()
  return { near: new Session(a, { ...sessionOptions(), client: true }), far: new Session(b, { ...sessionOptions(), client: false }) }
}

class StreamAgent extends http.Agent {
  readonly #open: () => Duplex
  constructor (open: () => Duplex) {
    super({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256, scheduling: 'lifo' })
    this.#open = open
  }

  override createConnection (): Duplex { return this.#open() }
}

interface Variant {
  get: (path: string) => Promise<number>
  /** Starts a watch: resolves once the head arrived; the body never ends. */
  watch: (path: string) => Promise<void>
  close: () => void
}

function http1Variant (): Variant {
  const { near, far } = sessions()
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/watch') === true) {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.flushHeaders()
      return
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY) })
    res.end(BODY)
  })
  server.requestTimeout = 0
  far.on('stream', (s: Duplex) => {
    s.on('error', () => {})
    server.emit('connection', s)
  })
  const agent = new StreamAgent(() => near.open())
  return {
    get: async (path) => await new Promise((resolve, reject) => {
      const req = http.request({ agent, path, headers: HEADERS, setHost: false }, (res) => {
        let n = 0
        res.on('data', (c: Buffer) => { n += c.length })
        res.on('end', () => resolve(n))
      })
      req.on('error', reject)
      req.end()
    }),
    watch: async (path) => await new Promise((resolve, reject) => {
      const req = http.request({ agent, path, headers: HEADERS, setHost: false }, () => resolve())
      req.on('error', reject)
      req.end()
    }),
    close: () => { agent.destroy(); near.destroy(); far.destroy() }
  }
}

// [u32 length][payload]; a zero-length frame ends a body.
function frame (payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(4 + payload.length)
  out.writeUInt32BE(payload.length, 0)
  payload.copy(out, 4)
  return out
}

/** Reads length-prefixed frames from a stream and hands each payload to `onFrame`. */
function frameReader (stream: Duplex, onFrame: (payload: Buffer) => void): void {
  let buf: Buffer = Buffer.alloc(0)
  stream.on('data', (c: Buffer) => {
    buf = buf.length === 0 ? c : Buffer.concat([buf, c])
    while (buf.length >= 4) {
      const len = buf.readUInt32BE(0)
      if (buf.length < 4 + len) break
      const payload = buf.subarray(4, 4 + len)
      buf = buf.subarray(4 + len)
      onFrame(payload)
    }
  })
}

function frameVariant (): Variant {
  const { near, far } = sessions()
  const body = Buffer.from(BODY)
  far.on('stream', (s: Duplex) => {
    s.on('error', () => {})
    frameReader(s, (payload) => {
      const head = JSON.parse(payload.toString()) as { m: string, p: string, h: string[] }
      if (head.p.startsWith('/watch')) {
        s.write(frame(Buffer.from(JSON.stringify({ s: 200, h: ['content-type', 'application/json'] }))))
        return
      }
      s.write(Buffer.concat([
        frame(Buffer.from(JSON.stringify({ s: 200, h: ['content-type', 'application/json', 'content-length', String(body.length)] }))),
        frame(body),
        frame(Buffer.alloc(0))
      ]))
    })
  })
  // One pending exchange per pooled stream; the reader dispatches to it.
  const idle: Array<{ stream: Duplex, set: (fn: (p: Buffer) => void) => void }> = []
  const take = (): { stream: Duplex, set: (fn: (p: Buffer) => void) => void } => {
    const pooled = idle.pop()
    if (pooled !== undefined) return pooled
    const stream = near.open()
    stream.on('error', () => {})
    let handler: (p: Buffer) => void = () => {}
    frameReader(stream, (p) => handler(p))
    return { stream, set: (fn) => { handler = fn } }
  }
  const send = (path: string, onHead: () => void, onDone: (n: number) => void, pooled: ReturnType<typeof take>): void => {
    let head = true
    let n = 0
    pooled.set((p) => {
      if (head) { head = false; JSON.parse(p.toString()); onHead(); return }
      if (p.length === 0) { idle.push(pooled); onDone(n); return }
      n += p.length
    })
    pooled.stream.write(frame(Buffer.from(JSON.stringify({ m: 'GET', p: path, h: HEADERS }))))
  }
  return {
    get: async (path) => await new Promise((resolve) => send(path, () => {}, resolve, take())),
    watch: async (path) => await new Promise((resolve) => send(path, resolve, () => {}, take())),
    close: () => { near.destroy(); far.destroy() }
  }
}

async function rps (v: Variant): Promise<number> {
  let next = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < REQUESTS) {
      next++
      const n = await v.get('/version')
      if (n !== Buffer.byteLength(BODY)) throw new Error(`short body: ${n}`)
    }
  }))
  return REQUESTS / ((performance.now() - started) / 1000)
}

function heap (): number {
  for (let i = 0; i < 4; i++) globalThis.gc?.()
  return process.memoryUsage().heapUsed
}

async function perWatch (make: () => Variant, baseline: boolean): Promise<number> {
  const v = make()
  // Warm the session so its own buffers are not counted.
  await v.get('/version')
  const before = heap()
  if (!baseline) for (let i = 0; i < WATCHES; i++) await v.watch(`/watch/${i}`)
  const after = heap()
  v.close()
  return (after - before) / WATCHES
}

async function main (): Promise<void> {
  if (globalThis.gc === undefined) throw new Error('run with --expose-gc')
  const results: Record<string, { rps: number, bytesPerIdleWatch: number }> = {}
  for (const [name, make] of [['http1', http1Variant], ['frame', frameVariant]] as const) {
    const runs: number[] = []
    for (let i = 0; i < 3; i++) {
      const v = make()
      await rps(v) // warm-up run, discarded
      runs.push(await rps(v))
      v.close()
    }
    runs.sort((a, b) => a - b)
    results[name] = { rps: Math.round(runs[1]!), bytesPerIdleWatch: Math.round(await perWatch(make, false)) }
  }
  console.log(JSON.stringify({ requests: REQUESTS, concurrency: CONCURRENCY, watches: WATCHES, results }, null, 2))
  const h = results.http1!
  const f = results.frame!
  console.log(`frame vs http1: rps x${(f.rps / h.rps).toFixed(2)}, bytes per idle watch ${f.bytesPerIdleWatch} vs ${h.bytesPerIdleWatch}`)
}

await main()
