// Wiring for the hop-frame tests: a real TLS upstream (node:http2 with
// allowHTTP1, or HTTPS with HTTP/1.1 only), the agent's upstream and stream
// handler on one end of an in-memory mux session pair, and a test "server"
// on the other end that speaks hop frames with the real codec.
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import { EventEmitter, once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { duplexPair, type Duplex } from 'node:stream'
import type { TestContext } from 'node:test'
import { Session } from '@tower/mux'
import {
  encodeDataHeader, encodeEnd, encodePreamble, encodeRequestHead, HopDecoder, sessionOptions,
  type HopMessage, type HopRequestHead, type HopResponseHead
} from '@tower/transport'
import { createUpstream, type Upstream } from '../src/upstream.ts'
import type { AgentMetrics } from '../src/metrics.ts'
import { createHopHandler, type HopHandler } from '../src/hop-handler.ts'
import { createStreamHandler } from '../src/stream-handler.ts'
import { captureLogger, SA_TOKEN, type LogEntry } from './harness.ts'
import { createTestCa } from './fixtures/tls.ts'

export interface HopUpstream {
  url: string
  caPem: string
  events: EventEmitter
  /** Bytes of /big bodies written so far. */
  produced: number
  /** TLS connections accepted. */
  connections: number
  close (): Promise<void>
}

type Req = http.IncomingMessage | http2.Http2ServerRequest
type Res = http.ServerResponse | http2.Http2ServerResponse

/**
 * Routes (the same on both kinds):
 *   *   /echo        JSON: method, path, headers, body (read whole), httpVersion
 *   GET /watch       200, one line now, more with events.emit('push'); 'watch-closed' when the caller goes
 *   GET /big?bytes=N N bytes, written only as fast as the client reads them
 */
export async function startHopUpstream (kind: 'h2' | 'h1'): Promise<HopUpstream> {
  const ca = createTestCa('hop upstream ca')
  const leaf = ca.issue({ cn: 'kube-apiserver', dns: ['localhost'], ips: ['127.0.0.1'] })
  const events = new EventEmitter()
  const state = { produced: 0, connections: 0 }
  const handler = (req: Req, res: Res): void => {
    const url = new URL(req.url ?? '/', 'https://x')
    const r = res as http.ServerResponse
    if (url.pathname === '/echo') {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const body = JSON.stringify({ method: req.method, path: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('latin1'), httpVersion: req.httpVersion })
        r.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-test': 'yes' })
        r.end(body)
      })
      return
    }
    if (url.pathname === '/watch') {
      r.writeHead(200, { 'content-type': 'application/json' })
      r.write(JSON.stringify({ type: 'ADDED' }) + '\n')
      const push = (line: string): void => { r.write(line + '\n') }
      events.on('push', push)
      res.once('close', () => {
        events.off('push', push)
        events.emit('watch-closed')
      })
      return
    }
    if (url.pathname === '/big') {
      const total = Number(url.searchParams.get('bytes') ?? '0')
      const chunk = Buffer.alloc(64 * 1024, 0x61)
      let sent = 0
      r.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total })
      const pump = (): void => {
        while (sent < total) {
          const n = Math.min(chunk.length, total - sent)
          sent += n
          state.produced += n
          if (!r.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
            r.once('drain', pump)
            return
          }
        }
        r.end()
      }
      pump()
      return
    }
    r.writeHead(404)
    r.end('not found')
  }
  const server = kind === 'h2'
    ? http2.createSecureServer({ cert: leaf.certPem, key: leaf.keyPem, allowHTTP1: true }, handler)
    : https.createServer({ cert: leaf.certPem, key: leaf.keyPem, ALPNProtocols: ['http/1.1'] }, handler)
  const sockets = new Set<{ destroy: () => void }>()
  server.on('secureConnection', (socket: { destroy: () => void, once: (e: string, f: () => void) => void }) => {
    state.connections++
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  return {
    url: `https://127.0.0.1:${port}`,
    caPem: ca.certPem,
    events,
    get produced () { return state.produced },
    get connections () { return state.connections },
    async close () {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

export interface HopRig {
  /** The server's end of the session: open streams here. */
  near: Session
  /** The agent's end. */
  far: Session
  upstream: Upstream
  hop: HopHandler
  logs: LogEntry[]
  /** Opens a kind `hframe` stream. */
  open (): HopClient
}

/** The agent side over an in-memory session pair, re-originating to `url`. */
export function hopRig (t: TestContext, url: string, caPem: string, http2Mode: 'auto' | 'off' = 'auto', metrics?: AgentMetrics): HopRig {
  const logger = captureLogger()
  const upstream = createUpstream({ kind: 'url', url, caPem, token: SA_TOKEN }, { logger, credentialRefreshMs: 1000, maxSockets: 64, connectTimeoutMs: 5000, http2: http2Mode, metrics })
  const hop = createHopHandler({ upstream, logger, warnIntervalMs: 10_000 })
  const [a, b] = duplexPair()
  const near = new Session(a, { ...sessionOptions(), client: true })
  const far = new Session(b, { ...sessionOptions(), client: false })
  far.on('stream', createStreamHandler({ upstream, httpServer: http.createServer(), hopHandler: hop, logger, preambleTimeoutMs: 5000, connectTimeoutMs: 5000 }))
  t.after(() => {
    near.destroy()
    far.destroy()
    upstream.close()
  })
  return {
    near,
    far,
    upstream,
    hop,
    logs: logger.entries,
    open () {
      const s = near.open()
      s.write(encodePreamble({ kind: 'hframe', id: 'test' }))
      return new HopClient(s)
    }
  }
}

/** A response read whole. */
export interface HopResponse {
  head: HopResponseHead
  body: Buffer
}

/** The test server's side of one hop stream. */
export class HopClient {
  readonly stream: Duplex
  readonly #decoder = new HopDecoder()
  readonly #queue: HopMessage[] = []
  #wake: (() => void) | undefined
  #error: Error | undefined
  /** Resolves 'end' on a FIN from the agent, 'reset' when the stream closed without one. */
  readonly closed: Promise<'end' | 'reset'>

  constructor (stream: Duplex) {
    this.stream = stream
    let ended = false
    stream.on('error', () => {})
    stream.on('end', () => { ended = true; this.#wakeUp() })
    this.closed = new Promise((resolve) => stream.once('close', () => {
      this.#error ??= new Error('stream closed')
      this.#wakeUp()
      resolve(ended ? 'end' : 'reset')
    }))
    stream.on('data', (c: Buffer) => {
      // data messages are views of `c`: copy, since they are kept
      for (const m of this.#decoder.push(Buffer.from(c))) this.#queue.push(m)
      this.#wakeUp()
    })
  }

  #wakeUp (): void {
    const w = this.#wake
    this.#wake = undefined
    w?.()
  }

  /** Sends one request: head, the body pieces as DATA, END. */
  send (head: Omit<HopRequestHead, 'body'>, body?: Buffer[]): void {
    this.stream.write(encodeRequestHead({ ...head, body: body !== undefined }))
    for (const c of body ?? []) this.stream.write(Buffer.concat([encodeDataHeader(c.length), c]))
    this.stream.write(encodeEnd())
  }

  /** The next message; rejects when the stream closes first. */
  async next (): Promise<HopMessage> {
    for (;;) {
      const m = this.#queue.shift()
      if (m !== undefined) return m
      if (this.#error !== undefined || this.stream.readableEnded) throw this.#error ?? new Error('stream ended')
      await new Promise<void>((resolve) => { this.#wake = resolve })
    }
  }

  /** Reads one whole response. */
  async response (): Promise<HopResponse> {
    const first = await this.next()
    if (first.type !== 'response-head') throw new Error(`expected a response head, got ${first.type}`)
    const chunks: Buffer[] = []
    for (;;) {
      const m = await this.next()
      if (m.type === 'end') break
      if (m.type !== 'data') throw new Error(`unexpected ${m.type}`)
      chunks.push(m.chunk)
    }
    return { head: first.head, body: Buffer.concat(chunks) }
  }

  /** One exchange. */
  async exchange (head: Omit<HopRequestHead, 'body'>, body?: Buffer[]): Promise<HopResponse> {
    this.send(head, body)
    return await this.response()
  }
}

/** `name`'s value in a flat header list. */
export function header (list: readonly string[], name: string): string | undefined {
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1]
  return undefined
}
