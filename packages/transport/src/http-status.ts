/**
 * The one writer of error answers, for the server and the agent alike: a
 * Kubernetes `Status` object, so kubectl and client-go print Tower's message
 * instead of "unknown error", with the `reason` Kubernetes pairs with each
 * code.
 *
 * A raw socket (an upgrade request, a parse error, a refused handshake) is
 * answered with `connection: close`, ended, and then destroyed: at once when
 * the peer has closed too, otherwise after {@link ERROR_LINGER_MS}. A plain
 * `end()` is not enough: a peer that never reads or never closes would hold
 * the socket (and its file descriptor) open forever.
 */
import type { ServerResponse } from 'node:http'
import { constants as h2constants, type ServerHttp2Stream } from 'node:http2'
import type { Duplex } from 'node:stream'
import { HOP_BY_HOP_HEADERS } from './hop-by-hop.ts'

/**
 * How long a raw socket that was answered with an error may linger, in
 * milliseconds: time for the answer to flush and for the peer to read it and
 * close. After that the socket is destroyed whatever the peer does.
 */
export const ERROR_LINGER_MS = 2000

/**
 * Status codes, their HTTP reason phrase and the Kubernetes `reason`
 * (`metav1.StatusReason`) Tower pairs them with.
 *
 * 502 has no reason of its own in Kubernetes: it is `InternalError`, what the
 * apiserver says of a failure on its own side it cannot name more precisely.
 * It must not be `ServiceUnavailable`, which means "try again": 502 answers a
 * request that reached an agent that could not reach its kube-apiserver, and
 * only 503 (plus Retry-After) tells a client that waiting may help.
 */
const STATUS = new Map<number, readonly [phrase: string, reason: string]>([
  [400, ['Bad Request', 'BadRequest']],
  [401, ['Unauthorized', 'Unauthorized']],
  [403, ['Forbidden', 'Forbidden']],
  [404, ['Not Found', 'NotFound']],
  [405, ['Method Not Allowed', 'MethodNotAllowed']],
  [408, ['Request Timeout', 'Timeout']],
  [413, ['Payload Too Large', 'RequestEntityTooLarge']],
  [429, ['Too Many Requests', 'TooManyRequests']],
  [431, ['Request Header Fields Too Large', 'RequestEntityTooLarge']],
  [500, ['Internal Server Error', 'InternalError']],
  [502, ['Bad Gateway', 'InternalError']],
  [503, ['Service Unavailable', 'ServiceUnavailable']],
  [504, ['Gateway Timeout', 'Timeout']]
])

// A code outside the table is a caller's bug; answer it as what it is
// rather than inventing a reason for it.
const FALLBACK_4XX = ['Bad Request', 'BadRequest'] as const
const FALLBACK_5XX = ['Internal Server Error', 'InternalError'] as const

function entry (code: number): readonly [string, string] {
  return STATUS.get(code) ?? (code >= 400 && code < 500 ? FALLBACK_4XX : FALLBACK_5XX)
}

/** The Kubernetes `reason` Tower sends with `code` (e.g. 503 → `ServiceUnavailable`). */
export function statusReason (code: number): string {
  return entry(code)[1]
}

/** The JSON body (newline-terminated) of a Kubernetes Status failure with `code` and `message`. */
export function statusBody (code: number, message: string): string {
  return JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: statusReason(code), code }) + '\n'
}

/** Options of {@link sendStatus} and {@link sendStatusRaw}. */
export interface StatusAnswerOptions {
  /**
   * Send the message as `text/plain` instead of a Status object. client-go
   * shows the body of a 5xx other than 503/504 only when it is text: on its
   * discovery path (every `kubectl get`) a JSON Status there is "unknown".
   * Use it where the message is the one thing the caller must see.
   */
  text?: boolean
}

function bodyFor (code: number, message: string, opts: StatusAnswerOptions): { body: string, type: string } {
  return opts.text === true
    ? { body: message + '\n', type: 'text/plain; charset=utf-8' }
    : { body: statusBody(code, message), type: 'application/json' }
}

/**
 * Answers an HTTP response with a Status failure. Pass
 * `{ connection: 'close' }` in `headers` to close the connection after it
 * (node:http then ends and destroys the socket). A response whose head is
 * already sent cannot carry an error any more and is destroyed instead.
 */
export function sendStatus (res: ServerResponse, code: number, message: string, headers: Record<string, string> = {}, opts: StatusAnswerOptions = {}): void {
  if (res.headersSent || res.destroyed) {
    res.destroy()
    return
  }
  const { body, type } = bodyFor(code, message, opts)
  res.writeHead(code, { ...safeHeaders(headers), 'content-type': type, 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

/**
 * Answers a raw socket with a Status failure and `connection: close`, ends
 * it, and destroys it once the peer has closed its side, or after
 * {@link ERROR_LINGER_MS} if it does not. A socket that is not writable is
 * destroyed at once. Input arriving meanwhile is read and discarded, so the
 * kernel does not reset the connection before the peer has read the answer.
 */
export function sendStatusRaw (socket: Duplex, code: number, message: string, headers: Record<string, string> = {}, opts: StatusAnswerOptions = {}): void {
  // node:http removes its own listeners before handing a socket over; an
  // error on a socket without one would take the process down.
  socket.on('error', destroyQuietly)
  if (!socket.writable || socket.destroyed) {
    socket.destroy()
    return
  }
  const { body, type } = bodyFor(code, message, opts)
  let head = `HTTP/1.1 ${code} ${entry(code)[0]}\r\n`
  for (const [name, value] of Object.entries(safeHeaders(headers))) {
    if (!RAW_OWN.has(name.toLowerCase())) head += `${name}: ${value}\r\n`
  }
  head += `content-type: ${type}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n`
  const timer = setTimeout(() => socket.destroy(), ERROR_LINGER_MS)
  timer.unref()
  socket.once('close', () => clearTimeout(timer))
  // Done when the answer is flushed and the peer has closed its side too.
  let flushed = false
  let peerEnded = socket.readableEnded
  socket.once('end', () => {
    peerEnded = true
    if (flushed) socket.destroy()
  })
  socket.resume()
  socket.end(head + body, () => {
    flushed = true
    if (peerEnded) socket.destroy()
  })
}

/**
 * Answers an HTTP/2 stream with a Status failure and ends the stream (the
 * session stays up; close it after this to refuse the caller). Connection
 * headers are not HTTP/2 and are left out. A stream whose head is already
 * sent cannot carry an error any more and is reset instead.
 */
export function sendStatusH2 (stream: ServerHttp2Stream, code: number, message: string, headers: Record<string, string> = {}, opts: StatusAnswerOptions = {}): void {
  if (stream.headersSent || stream.destroyed) {
    stream.close(h2constants.NGHTTP2_INTERNAL_ERROR)
    return
  }
  const { body, type } = bodyFor(code, message, opts)
  const head: Record<string, string | number> = Object.create(null) as Record<string, string | number>
  for (const [name, value] of Object.entries(safeHeaders(headers))) {
    const lower = name.toLowerCase()
    if (!HOP_BY_HOP_HEADERS.has(lower) && !RAW_OWN.has(lower)) head[lower] = value
  }
  head[':status'] = code
  head['content-type'] = type
  head['content-length'] = Buffer.byteLength(body)
  stream.respond(head)
  stream.end(body)
}

function destroyQuietly (this: Duplex): void {
  this.destroy()
}

// Header names and values from callers must never split the response.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/

// Set by sendStatusRaw itself.
const RAW_OWN = new Set(['content-type', 'content-length', 'connection', 'transfer-encoding'])

function safeHeaders (headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>
  for (const [name, value] of Object.entries(headers)) {
    if (TOKEN.test(name) && FIELD_VALUE.test(value)) out[name] = value
  }
  return out
}
