/**
 * The `l7-chain` baseline: proxy mode's ceiling. Two plain Node HTTP proxies
 * in two processes doing the work of Tower's proxy mode without the mux:
 *
 *   caller ──TLS (ALPN h2 | http/1.1)──▶ entry ──TLS link──▶ exit ──TLS (h2 when offered)──▶ upstream
 *
 * The entry terminates the caller's TLS offering h2 and http/1.1 as Tower's
 * cluster ports will, and re-sends each request over the TLS link to the
 * exit: by default (`--link-proto h2`) as a stream of one h2 session, node's
 * native multiplexer on one TLS connection as Tower's mux is on one wss; with
 * `--link-proto h1` as HTTP/1.1 text on a keep-alive pool (one TLS connection
 * per request in flight: smoke runs had it below Tower's own small-request
 * rate, since 64 TLS sockets cost more than one). The exit re-originates
 * to the upstream over TLS, on h2 sessions when
 * the upstream negotiates h2 (as Tower's agent pool does) and HTTP/1.1
 * keep-alive otherwise. Bodies stream both ways with backpressure; a caller
 * that goes away destroys the request on every hop.
 *
 *   node bench/l7-chain.ts --role exit --target https://127.0.0.1:UP --ca F --cert F --key F
 *   node bench/l7-chain.ts --role entry --link 127.0.0.1:EXIT --ca F --cert F --key F
 *
 * Each listens on 127.0.0.1 port 0 and sends `{ type: 'ready', port, pid, upstreamProto? }` over IPC.
 */
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import tls from 'node:tls'
import type { AddressInfo, Socket } from 'node:net'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { H2Pool, H2_SESSION_WINDOW, H2_STREAM_WINDOW } from './lib/h2-pool.ts'

type Req = http.IncomingMessage | http2.Http2ServerRequest
type Res = http.ServerResponse | http2.Http2ServerResponse

/** Headers that belong to one hop (RFC 9110 §7.6.1, plus h2's connection-specific ones). */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'http2-settings', 'host'])

/** The end-to-end headers of a head: no pseudo-headers, no hop-by-hop ones. */
export function endToEnd (h: http.IncomingHttpHeaders | http2.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = Object.create(null)
  for (const [k, v] of Object.entries(h)) if (v !== undefined && k[0] !== ':' && !HOP.has(k)) out[k] = v
  return out
}

function abort (res: Res): void {
  if ('stream' in res) res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR)
  else res.destroy()
}

function fail (res: Res, err: Error): void {
  if (res.headersSent) { abort(res); return }
  const body = `l7-chain: ${err.message}\n`
  ;(res as http.ServerResponse).writeHead(502, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

const hasBody = (req: Req): boolean => (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') || req.headers['transfer-encoding'] !== undefined

/** Relays one request over HTTP/1.1 with `agent` to host:port (the link, or an upstream without h2). */
function forwardH1 (req: Req, res: Res, agent: https.Agent, to: { host: string, port: number, authority: string }): void {
  const headers = endToEnd(req.headers)
  headers.host = to.authority
  const out = https.request({ agent, host: to.host, port: to.port, method: req.method, path: req.url, headers }, (r) => {
    ;(res as http.ServerResponse).writeHead(r.statusCode ?? 502, endToEnd(r.headers))
    r.pipe(res as http.ServerResponse)
    r.once('error', () => abort(res))
  })
  out.once('error', (err) => fail(res, err))
  res.once('close', () => { if (!res.writableFinished) out.destroy() })
  req.pipe(out)
}

/** Relays one request as an h2 stream on `pool`. */
async function forwardH2 (req: Req, res: Res, pool: H2Pool, authority: string): Promise<void> {
  const body = hasBody(req)
  let s: http2.ClientHttp2Stream
  try {
    s = await pool.request({ ...endToEnd(req.headers), ':method': req.method ?? 'GET', ':path': req.url ?? '/', ':authority': authority }, { endStream: !body })
  } catch (err) { fail(res, err as Error); return }
  s.once('response', (h) => {
    ;(res as http.ServerResponse).writeHead(Number(h[':status']), endToEnd(h))
    s.pipe(res as http.ServerResponse)
  })
  s.once('error', (err) => fail(res, err))
  s.once('close', () => { if (!res.writableFinished && s.rstCode !== http2.constants.NGHTTP2_NO_ERROR) abort(res) })
  res.once('close', () => { if (!res.writableFinished) s.close(http2.constants.NGHTTP2_CANCEL) })
  if (body) req.pipe(s)
  else req.resume()
}

/** True when `origin` (https://host:port) negotiates h2 by ALPN. */
async function offersH2 (host: string, port: number, ca: Buffer): Promise<boolean> {
  const s = tls.connect({ host, port, ca, servername: 'localhost', ALPNProtocols: ['h2', 'http/1.1'] })
  try {
    await once(s, 'secureConnect')
    return s.alpnProtocol === 'h2'
  } finally { s.destroy() }
}

const hostPort = (s: string | undefined, what: string): { host: string, port: number } => {
  const m = /^(?:https:\/\/)?(.+):(\d+)$/.exec(s ?? '')
  if (m === null) throw new Error(`${what} must be HOST:PORT`)
  return { host: m[1], port: Number(m[2]) }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { role: { type: 'string' }, target: { type: 'string' }, link: { type: 'string' }, 'link-proto': { type: 'string', default: 'h1' }, cert: { type: 'string' }, key: { type: 'string' }, ca: { type: 'string' } } })
  const linkProto = values['link-proto']
  if (linkProto !== 'h1' && linkProto !== 'h2') throw new Error('--link-proto must be h1 or h2')
  if (values.cert === undefined || values.key === undefined || values.ca === undefined) throw new Error('l7-chain.ts needs --cert, --key and --ca')
  const cert = readFileSync(values.cert)
  const key = readFileSync(values.key)
  const ca = readFileSync(values.ca)
  const sockets = new Set<Socket>()
  let srv: http2.Http2SecureServer
  let upstreamProto: string | undefined
  const closers: Array<() => void> = []
  if (values.role === 'exit') {
    const up = hostPort(values.target, '--target')
    const authority = `${up.host}:${up.port}`
    let handler: (req: Req, res: Res) => void
    if (await offersH2(up.host, up.port, ca)) {
      upstreamProto = 'h2'
      const pool = new H2Pool({ origin: `https://${authority}`, ca: ca.toString(), servername: 'localhost' })
      closers.push(() => pool.close())
      handler = (req, res) => { void forwardH2(req, res, pool, authority) }
    } else {
      upstreamProto = 'http/1.1'
      const agent = new https.Agent({ keepAlive: true, maxSockets: Infinity, ca, servername: 'localhost', maxCachedSessions: 0 })
      closers.push(() => agent.destroy())
      handler = (req, res) => forwardH1(req, res, agent, { ...up, authority })
    }
    // The exit offers h2 too, for an entry whose link is one h2 session (--link-proto h2).
    srv = http2.createSecureServer({ cert, key, allowHTTP1: true, settings: { maxConcurrentStreams: 1000, initialWindowSize: H2_STREAM_WINDOW }, maxSessionMemory: 256 }, handler)
    srv.on('session', (session) => session.once('connect', () => session.setLocalWindowSize(H2_SESSION_WINDOW)))
  } else if (values.role === 'entry') {
    const link = hostPort(values.link, '--link')
    const authority = `${link.host}:${link.port}`
    let handler: (req: Req, res: Res) => void
    if (linkProto === 'h2') {
      const pool = new H2Pool({ origin: `https://${authority}`, ca: ca.toString(), servername: 'localhost' })
      closers.push(() => pool.close())
      handler = (req, res) => { void forwardH2(req, res, pool, authority) }
    } else {
      const agent = new https.Agent({ keepAlive: true, maxSockets: Infinity, ca, servername: 'localhost', maxCachedSessions: 0 })
      closers.push(() => agent.destroy())
      handler = (req, res) => forwardH1(req, res, agent, { ...link, authority })
    }
    srv = http2.createSecureServer({
      cert,
      key,
      allowHTTP1: true,
      settings: { maxConcurrentStreams: 1000, initialWindowSize: H2_STREAM_WINDOW },
      maxSessionMemory: 256
    }, handler)
    srv.on('session', (session) => session.once('connect', () => session.setLocalWindowSize(H2_SESSION_WINDOW)))
  } else {
    throw new Error('usage: l7-chain.ts --role exit|entry ...')
  }
  // Long keep-alive so idle gaps between measured phases never race a close (as the upstream does).
  const h1 = srv as unknown as http.Server
  h1.keepAliveTimeout = 120_000
  h1.headersTimeout = 130_000
  h1.requestTimeout = 0
  srv.on('connection', (c: Socket) => { c.setNoDelay(true); sockets.add(c); c.once('close', () => sockets.delete(c)) })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  process.send?.({ type: 'ready', port: (srv.address() as AddressInfo).port, pid: process.pid, upstreamProto })
  const stop = (): void => {
    for (const c of closers) c()
    for (const s of sockets) s.destroy()
    srv.close(() => process.exit(0))
  }
  process.once('SIGTERM', stop)
  process.once('disconnect', stop)
}
