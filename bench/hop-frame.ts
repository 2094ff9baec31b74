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
 * - `hframe`: the real thing (issue 12): the codec of @tower/transport on the
 *   server side and the agent's own hop handler (packages/agent/src/
 *   hop-handler.ts), which re-originates every request over its h2 pool to
 *   a TLS node:http2 upstream running in a worker thread (so the upstream's
 *   heap is not counted, but the agent's upstream streams are). Its figures
 *   include that second leg, which the two sketches above do not have.
 *
 * It prints requests per second for small GETs (a /version-sized answer) and
 * the heap each idle watch holds on the hop (both ends, beyond the mux stream
 * that both variants hold), measured over `watches` watches whose response
 * head was sent and whose body never ends.
 */
import http from 'node:http'
import { once } from 'node:events'
import { duplexPair, type Duplex } from 'node:stream'
import { Worker } from 'node:worker_threads'
import { Session } from '@tower/mux'
import { encodeEnd, encodePreamble, encodeRequestHead, encodeResponseHead, HopDecoder, sessionOptions } from '@tower/transport'
import { createUpstream } from '../packages/agent/src/upstream.ts'
import { createHopHandler } from '../packages/agent/src/hop-handler.ts'
import { createStreamHandler } from '../packages/agent/src/stream-handler.ts'
import { createTestCa } from '../packages/agent/test/fixtures/tls.ts'

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

type Make = () => Variant | Promise<Variant>

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

// The upstream of the hframe variant, in a worker so that its heap is its own.
const UPSTREAM_WORKER = `
const http2 = require('node:http2')
const { parentPort, workerData } = require('node:worker_threads')
const server = http2.createSecureServer({ cert: workerData.cert, key: workerData.key, settings: { maxConcurrentStreams: 1000 } }, (req, res) => {
  if (req.url.startsWith('/watch')) { res.writeHead(200, { 'content-type': 'application/json' }); res.write(''); return }
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(workerData.body) })
  res.end(workerData.body)
})
server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port))
`

let upstreamWorker: { url: string, caPem: string, worker: Worker } | undefined
async function upstreamInWorker (): Promise<{ url: string, caPem: string }> {
  if (upstreamWorker !== undefined) return upstreamWorker
  const ca = createTestCa('bench hop upstream')
  const leaf = ca.issue({ cn: 'upstream', ips: ['127.0.0.1'] })
  const worker = new Worker(UPSTREAM_WORKER, { eval: true, workerData: { cert: leaf.certPem, key: leaf.keyPem, body: BODY } })
  const [port] = await once(worker, 'message') as [number]
  worker.unref()
  upstreamWorker = { url: `https://127.0.0.1:${port}`, caPem: ca.certPem, worker }
  return upstreamWorker
}

const silent = { trace () {}, debug () {}, info () {}, warn () {}, error () {}, child () { return silent } }
const LOWER_HEADERS = HEADERS.map((h, i) => i % 2 === 0 ? h.toLowerCase() : h)

// `holdOnly`: the agent side only reads the preamble and holds the stream,
// so hframe minus this is what the agent's hop handler and its upstream
// stream hold per idle watch, beyond the mux stream.
async function hframeVariant (holdOnly = false): Promise<Variant> {
  const { near, far } = sessions()
  const { url, caPem } = await upstreamInWorker()
  const upstream = createUpstream({ kind: 'url', url, caPem }, { logger: silent, credentialRefreshMs: 1000, maxSockets: 16384, connectTimeoutMs: 5000, http2: 'auto', h2MaxSessions: 64 })
  const hopHandler = createHopHandler({ upstream, logger: silent, warnIntervalMs: 10_000 })
  const serve = createStreamHandler({ upstream, httpServer: http.createServer(), hopHandler, logger: silent, preambleTimeoutMs: 10_000, connectTimeoutMs: 5000 })
  far.on('stream', (s: Duplex) => {
    if (!holdOnly) return serve(s)
    s.on('error', () => {})
    // a bare responder: a GET is answered at once, a watch gets its head and is then held
    const decoder = new HopDecoder()
    let skip = 4 + Buffer.byteLength(JSON.stringify({ id: 'bench' }))
    s.on('data', (c: Buffer) => {
      if (skip > 0) {
        const n = Math.min(skip, c.length)
        skip -= n
        c = c.subarray(n)
      }
      for (const m of decoder.push(c)) {
        if (m.type !== 'request-head') continue
        const watch = m.head.path.startsWith('/watch')
        s.write(Buffer.concat(watch
          ? [encodeResponseHead({ status: 200, headers: [], body: true })]
          : [encodeResponseHead({ status: 200, headers: [], body: false }), encodeEnd()]))
      }
    })
  })
  // The server side: pooled streams, each with its decoder and the pending exchange's callbacks.
  interface Pooled { stream: Duplex, onHead: () => void, onData: (n: number) => void, onEnd: () => void }
  const idle: Pooled[] = []
  const take = (): Pooled => {
    const pooled = idle.pop()
    if (pooled !== undefined) return pooled
    const stream = near.open()
    stream.on('error', () => {})
    stream.write(encodePreamble({ kind: 'hframe', id: 'bench' }))
    const p: Pooled = { stream, onHead: () => {}, onData: () => {}, onEnd: () => {} }
    const decoder = new HopDecoder()
    stream.on('data', (c: Buffer) => {
      for (const m of decoder.push(c)) {
        if (m.type === 'response-head') p.onHead()
        else if (m.type === 'data') p.onData(m.chunk.length)
        else if (m.type === 'end') p.onEnd()
      }
    })
    return p
  }
  const send = (path: string, onHead: () => void, onDone: (n: number) => void): void => {
    const p = take()
    let n = 0
    p.onHead = onHead
    p.onData = (k) => { n += k }
    p.onEnd = () => { idle.push(p); onDone(n) }
    p.stream.write(Buffer.concat([encodeRequestHead({ method: 'GET', path, headers: LOWER_HEADERS, body: false }), encodeEnd()]))
  }
  return {
    get: async (path) => await new Promise((resolve) => send(path, () => {}, resolve)),
    watch: async (path) => await new Promise((resolve) => send(path, resolve, () => {})),
    close: () => { near.destroy(); far.destroy(); upstream.close() }
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

async function perWatch (make: Make, baseline: boolean): Promise<number> {
  const v = await make()
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
  for (const [name, make] of [['http1', http1Variant], ['frame', frameVariant], ['hframe', hframeVariant]] as Array<[string, Make]>) {
    const runs: number[] = []
    for (let i = 0; i < 3; i++) {
      const v = await make()
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
  const r = results.hframe!
  console.log(`hframe (real codec and agent, plus the h2 leg to the upstream): ${r.rps} rps, bytes per idle watch ${r.bytesPerIdleWatch}`)
  const held = Math.round(await perWatch(async () => await hframeVariant(true), false))
  console.log(`hframe, agent side only (hop handler, exchange, upstream h2 stream; beyond the mux stream): ${r.bytesPerIdleWatch - held} bytes per idle watch (${r.bytesPerIdleWatch} - ${held} with an agent that only holds the stream)`)
  upstreamWorker?.worker.terminate()
}

await main()
