/**
 * The WebSocket opening handshake (RFC 6455 §4), both sides, for Tower's one
 * subprotocol. After it the socket carries frames (ws-stream.ts).
 *
 * Server: {@link upgradeProblem} checks an 'upgrade' request (method,
 * `Upgrade: websocket`, `Connection: Upgrade`, version, key) and
 * {@link acceptUpgrade} writes the 101 for one the caller has authenticated,
 * with optional extra headers (the server's limits, for the agent to adopt).
 * Client: {@link requestUpgrade} sends the GET through node:https (so TLS
 * verification, `servername` and an egress-proxy `agent` work as for any
 * request) and checks the 101: status, `Upgrade: websocket`,
 * `Connection: Upgrade`, `Sec-WebSocket-Accept` and the chosen subprotocol;
 * its caller gets the 101's headers. Any other answer rejects with a
 * `HandshakeError` carrying the status, the reason the server gave, and its
 * `Retry-After` in seconds when it sent one.
 */
import { createHash, randomBytes } from 'node:crypto'
import http from 'node:http'
import https from 'node:https'
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { HandshakeError, InvalidArgumentError } from './errors.ts'

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
/** Longest part of a refusal body quoted in the error, in bytes. */
const MAX_REASON_BYTES = 512

/** The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`. */
export function acceptKey (key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64')
}

// RFC 9110 §5.6.2 token: the characters a header name may use.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
// Field values: visible ASCII, spaces and tabs; no CR, LF, NUL or other controls (§5.5).
const FIELD_VALUE = /^[\t\x20-\x7e]*$/
// Headers acceptUpgrade writes itself; extra headers may not repeat them.
const OWN_HEADERS = new Set(['upgrade', 'connection', 'sec-websocket-accept', 'sec-websocket-protocol', 'sec-websocket-extensions', 'content-length', 'transfer-encoding'])

function headerText (v: string | string[] | undefined): string {
  return Array.isArray(v) ? v.join(',') : v ?? ''
}

/** True when a `Connection` header value lists the `upgrade` token (RFC 9110 §7.6.1). */
function hasUpgradeToken (connection: string | string[] | undefined): boolean {
  return headerText(connection).split(',').some((t) => t.trim().toLowerCase() === 'upgrade')
}

/**
 * Why `req` is not a WebSocket upgrade this server can accept, or undefined
 * when it is. The subprotocol is checked by the caller (it answers 400 with
 * its own text).
 */
export function upgradeProblem (req: IncomingMessage): string | undefined {
  if (req.method !== 'GET') return `method ${req.method ?? ''} cannot open a websocket`
  if (headerText(req.headers.upgrade).trim().toLowerCase() !== 'websocket') return 'missing "upgrade: websocket"'
  if (!hasUpgradeToken(req.headers.connection)) return 'missing "connection: upgrade"'
  if (req.headers['sec-websocket-version'] !== '13') return 'unsupported sec-websocket-version (13 is required)'
  const key = req.headers['sec-websocket-key']
  if (key === undefined || !/^[A-Za-z0-9+/]{22}==$/.test(key)) return 'missing or malformed sec-websocket-key'
  return undefined
}

/**
 * Writes the 101 that completes a checked upgrade (see {@link upgradeProblem}).
 * `headers` are extra response headers, e.g. `HEADER_MAX_STREAMS`.
 * @throws {InvalidArgumentError} before writing anything, on a header name
 *   that is not a token or one the handshake sets itself, or a value with
 *   CR, LF or another control character.
 */
export function acceptUpgrade (req: IncomingMessage, socket: Duplex, protocol: string, headers: Readonly<Record<string, string>> = {}): void {
  const lines = [
    'HTTP/1.1 101 Switching Protocols',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Accept: ${acceptKey(req.headers['sec-websocket-key'] ?? '')}`,
    `Sec-WebSocket-Protocol: ${protocol}`
  ]
  for (const [name, value] of Object.entries(headers)) {
    if (!TOKEN.test(name)) throw new InvalidArgumentError(`acceptUpgrade: header name ${JSON.stringify(name)} is not a token`)
    if (OWN_HEADERS.has(name.toLowerCase())) throw new InvalidArgumentError(`acceptUpgrade: header ${name} is set by the handshake itself`)
    if (typeof value !== 'string' || !FIELD_VALUE.test(value)) throw new InvalidArgumentError(`acceptUpgrade: value of header ${name} has a control character`)
    lines.push(`${name}: ${value.trim()}`)
  }
  lines.push('', '')
  socket.write(lines.join('\r\n'))
}

/** Options of {@link requestUpgrade}. */
export interface UpgradeRequest {
  /** `wss:` or `ws:` URL of the endpoint. */
  url: URL
  /** The subprotocol to ask for; the server must choose it. */
  protocol: string
  /** Extra request headers (credentials, identity). */
  headers?: OutgoingHttpHeaders
  /** TLS options, as for https.request. */
  ca?: string
  servername?: string
  rejectUnauthorized?: boolean
  /** An HTTP agent, e.g. one that tunnels through an egress proxy. */
  agent?: http.Agent
  /** Limit on the whole handshake (TCP, TLS, proxy, HTTP), in milliseconds. */
  timeoutMs: number
}

/** A completed client handshake. */
export interface UpgradeResult {
  /** The upgraded socket; frames follow (see ws-stream.ts). */
  socket: Socket
  /** Bytes that arrived after the 101's head. */
  head: Buffer
  /** The 101's response headers (names lower-case), e.g. `HEADER_MAX_STREAMS`. */
  headers: IncomingHttpHeaders
}

/** An upgrade in progress: `done` settles once; `abort()` cancels it. */
export interface PendingUpgrade {
  readonly done: Promise<UpgradeResult>
  abort (): void
}

/** Sends the upgrade request. See the module header. */
export function requestUpgrade (o: UpgradeRequest): PendingUpgrade {
  const key = randomBytes(16).toString('base64')
  const secure = o.url.protocol === 'wss:'
  const options: https.RequestOptions = {
    method: 'GET',
    protocol: secure ? 'https:' : 'http:',
    hostname: o.url.hostname.replace(/^\[|\]$/g, ''),
    port: o.url.port === '' ? (secure ? 443 : 80) : Number(o.url.port),
    path: o.url.pathname + o.url.search,
    headers: {
      ...o.headers,
      connection: 'Upgrade',
      upgrade: 'websocket',
      'sec-websocket-version': '13',
      'sec-websocket-key': key,
      'sec-websocket-protocol': o.protocol
    },
    ...(o.agent !== undefined ? { agent: o.agent } : {})
  }
  if (secure) {
    if (o.ca !== undefined) options.ca = o.ca
    if (o.servername !== undefined) options.servername = o.servername
    options.rejectUnauthorized = o.rejectUnauthorized !== false
  }
  const req = secure ? https.request(options) : http.request(options)

  let settle!: (err: Error | undefined, value?: UpgradeResult) => void
  const done = new Promise<UpgradeResult>((resolve, reject) => {
    let settled = false
    settle = (err, value) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (err !== undefined) {
        req.destroy()
        reject(err)
      } else {
        resolve(value as UpgradeResult)
      }
    }
  })
  const timer = setTimeout(() => {
    settle(new HandshakeError(`opening handshake timed out after ${o.timeoutMs} ms`))
  }, o.timeoutMs)

  req.on('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
    const problem = switchingProblem(res, key, o.protocol)
    if (problem !== undefined) {
      socket.destroy()
      settle(new HandshakeError(problem, res.statusCode))
      return
    }
    settle(undefined, { socket, head, headers: res.headers })
  })
  req.on('response', (res: IncomingMessage) => {
    const status = res.statusCode ?? 0
    if (status === 101) {
      // node:http reports a 101 as an upgrade only with "connection: upgrade"
      res.destroy()
      settle(new HandshakeError(switchingProblem(res, key, o.protocol) ?? 'server answered 101 without "connection: upgrade"', status))
      return
    }
    let body = ''
    res.setEncoding('utf8')
    res.on('data', (chunk: string) => {
      if (body.length < MAX_REASON_BYTES) body += chunk
    })
    const retryAfterS = retryAfterSeconds(res.headers['retry-after'])
    const finish = (): void => { settle(new HandshakeError(refusal(status, res.statusMessage, body), status, { retryAfterS })) }
    res.once('end', finish)
    res.once('error', finish)
    res.once('close', finish)
  })
  req.on('error', (err: Error) => {
    settle(new HandshakeError(describe(err), undefined, { cause: err }))
  })
  req.end()

  return {
    done,
    abort () {
      settle(new HandshakeError('handshake aborted'))
    }
  }
}

/** Longest `Retry-After` read, in seconds (a day); a longer one is ignored. */
const MAX_RETRY_AFTER_S = 86_400

/**
 * A `Retry-After` header in its delay-seconds form (RFC 9110 §10.2.3), or
 * undefined. The HTTP-date form, a repeated header, and anything else that is
 * not 1 to 5 digits are ignored: the caller then falls back to its own backoff.
 */
export function retryAfterSeconds (value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string' || !/^\s*\d{1,5}\s*$/.test(value)) return undefined
  const seconds = Number(value)
  return seconds <= MAX_RETRY_AFTER_S ? seconds : undefined
}

// Why a 101 does not complete the handshake we asked for, or undefined.
function switchingProblem (res: IncomingMessage, key: string, protocol: string): string | undefined {
  if (res.statusCode !== 101) return `server answered ${res.statusCode ?? 0} to the upgrade`
  if (headerText(res.headers.upgrade).trim().toLowerCase() !== 'websocket') return 'server answered 101 without "upgrade: websocket"'
  if (!hasUpgradeToken(res.headers.connection)) return 'server answered 101 without "connection: upgrade"'
  if (res.headers['sec-websocket-accept'] !== acceptKey(key)) return 'server sent a wrong sec-websocket-accept'
  if (res.headers['sec-websocket-protocol'] !== protocol) return `server chose subprotocol "${res.headers['sec-websocket-protocol'] ?? ''}", not ${protocol}`
  return undefined
}

function refusal (status: number, statusMessage: string | undefined, body: string): string {
  let reason = body.trim().slice(0, MAX_REASON_BYTES)
  // a Kubernetes-style Status or {"message": …} body: quote only the message
  try {
    const parsed = JSON.parse(reason) as { message?: unknown }
    if (typeof parsed.message === 'string') reason = parsed.message
  } catch {
    // not JSON: quote the text as it is
  }
  reason = reason.replace(/\s+/g, ' ')
  return `server answered ${status}${statusMessage ? ' ' + statusMessage : ''}${reason ? ': ' + reason : ''}`
}

// Node's TLS errors are precise but terse; name the usual cause.
function describe (err: Error & { code?: string }): string {
  switch (err.code) {
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
      return `server certificate not trusted (${err.code}): is the CA bundle the server's?`
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `server certificate does not match the host: ${err.message}`
    default:
      return err.message
  }
}
