/**
 * The benchmark's upstream: the same handler served over TLS (certificate
 * from the bench CA) and over plain TCP HTTP. Every path measures against it.
 * The TLS port offers ALPN `h2` and `http/1.1`, as a kube-apiserver does
 * (node:http2 secure server with allowHTTP1: an HTTP/1.1 connection is served
 * by node:http's own connection handler, so HTTP/1.1 callers see the same
 * server as before), with 1,000 concurrent streams per session (the
 * kube-apiserver's default).
 *
 *   GET  /bytes?n=N  N bytes of application/octet-stream, streamed from one
 *                    reusable buffer with backpressure (no per-request allocation)
 *   POST /upload     a sink: answers {"bytes": <count>} once the body ends
 *   GET  /json       a fixed 1,024-byte JSON body (keep-alive)
 *   GET  /watch      watch-like long poll: 200, chunked, one event line at
 *                    once, then held open until the client goes away
 *
 * Run as a child (`node bench/upstream.ts --cert F --key F`), it listens on
 * 127.0.0.1 port 0 and sends `{ type: 'ready', https, http, pid }` over IPC.
 */
import http from 'node:http'
import http2 from 'node:http2'
import { readFileSync } from 'node:fs'
import type { AddressInfo, Socket } from 'node:net'
import { H2_SESSION_WINDOW, H2_STREAM_WINDOW } from './lib/h2-pool.ts'
import { parseArgs } from 'node:util'

/** Bytes per write for /bytes: large enough that JS overhead per write is small. */
const CHUNK = 256 * 1024
const chunk = Buffer.alloc(CHUNK, 0x61)

/** The /json body: exactly 1,024 bytes. */
export const JSON_BODY: Buffer = (() => {
  const base = { kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'bench', namespace: 'default' }, data: { pad: '' } }
  const len = Buffer.byteLength(JSON.stringify(base))
  base.data.pad = 'x'.repeat(1024 - len)
  return Buffer.from(JSON.stringify(base))
})()

/** Upper bound for /bytes?n= so a typo cannot ask for terabytes. 8 GiB. */
const MAX_BYTES = 8 * 1024 ** 3

/** A request and response of node:http or of the http2 compatibility API. */
type Req = http.IncomingMessage | http2.Http2ServerRequest
type Res = http.ServerResponse | http2.Http2ServerResponse

function sendBytes (res: http.ServerResponse, n: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(n) })
  let left = n
  const pump = (): void => {
    while (left > 0) {
      const len = Math.min(left, CHUNK)
      left -= len
      const ok = res.write(len === CHUNK ? chunk : chunk.subarray(0, len))
      if (!ok) { res.once('drain', pump); return }
    }
    res.end()
  }
  res.once('close', () => { left = 0 })
  pump()
}

const watchEvent = Buffer.from('{"type":"ADDED","object":{"kind":"ConfigMap","metadata":{"name":"bench"}}}\n')

/** The request handler shared by the HTTPS and the HTTP listener. */
export function handle (req: Req, response: Res): void {
  // The handler uses only what both response types have (writeHead, write, end, 'drain', 'close').
  const res = response as http.ServerResponse
  const url = new URL(req.url ?? '/', 'http://x')
  if (req.method === 'GET' && url.pathname === '/bytes') {
    const n = Number(url.searchParams.get('n') ?? '0')
    if (!Number.isSafeInteger(n) || n < 0 || n > MAX_BYTES) { res.writeHead(400).end(); return }
    sendBytes(res, n)
  } else if (req.method === 'POST' && url.pathname === '/upload') {
    let bytes = 0
    req.on('data', (d: Buffer) => { bytes += d.length })
    req.once('end', () => {
      const body = JSON.stringify({ bytes })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body)
    })
  } else if (req.method === 'GET' && url.pathname === '/json') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': JSON_BODY.length }).end(JSON_BODY)
  } else if (req.method === 'GET' && url.pathname === '/watch') {
    // h2 forbids transfer-encoding; its DATA frames carry the body without it.
    res.writeHead(200, req.httpVersionMajor === 1 ? { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } : { 'content-type': 'application/json' })
    res.write(watchEvent)
    // Held open: the client (or the tunnel) ends it.
  } else {
    res.writeHead(404).end()
  }
}

/** Ports of a running upstream. */
export interface Upstream {
  /** HTTPS port on 127.0.0.1. */
  https: number
  /** Plain HTTP port on 127.0.0.1. */
  http: number
  /** Closes both listeners and every open connection. */
  close (): Promise<void>
}

function tune (server: http.Server | http2.Http2SecureServer): void {
  // allowHTTP1: HTTP/1.1 connections are served by node:http's handler, which reads these from the server.
  const srv = server as http.Server
  // Long keep-alive so idle gaps between measured phases never race a close.
  srv.keepAliveTimeout = 120_000
  srv.headersTimeout = 130_000
  srv.requestTimeout = 0
  srv.maxHeadersCount = 100
}

/** Starts both listeners on 127.0.0.1 port 0. */
export async function startUpstream (tls: { cert: string | Buffer, key: string | Buffer }): Promise<Upstream> {
  const s1 = http2.createSecureServer({
    cert: tls.cert,
    key: tls.key,
    allowHTTP1: true,
    settings: { maxConcurrentStreams: 1000, initialWindowSize: H2_STREAM_WINDOW },
    // 10,000 idle watches on a few sessions hold more than the 10 MB default per session
    maxSessionMemory: 256
  }, handle)
  const s2 = http.createServer(handle)
  tune(s1)
  tune(s2)
  const sockets = new Set<Socket>()
  s1.on('session', (session) => {
    session.once('connect', () => session.setLocalWindowSize(H2_SESSION_WINDOW))
  })
  for (const s of [s1, s2]) {
    s.on('connection', (c: Socket) => {
      c.setNoDelay(true)
      sockets.add(c)
      c.once('close', () => sockets.delete(c))
    })
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  }
  return {
    https: (s1.address() as AddressInfo).port,
    http: (s2.address() as AddressInfo).port,
    async close () {
      for (const c of sockets) c.destroy()
      await Promise.all([s1, s2].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))))
    }
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { cert: { type: 'string' }, key: { type: 'string' } } })
  if (values.cert === undefined || values.key === undefined) throw new Error('usage: upstream.ts --cert F --key F')
  const up = await startUpstream({ cert: readFileSync(values.cert), key: readFileSync(values.key) })
  process.send?.({ type: 'ready', https: up.https, http: up.http, pid: process.pid })
  process.once('SIGTERM', () => { void up.close().then(() => process.exit(0)) })
  process.once('disconnect', () => { void up.close().then(() => process.exit(0)) })
}
