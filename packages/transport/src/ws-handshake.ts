/**
 * The WebSocket opening handshake (RFC 6455 §4), both sides, for Tower's one
 * subprotocol. After it the socket carries frames (ws-stream.ts).
 *
 * Server: {@link acceptUpgrade} checks an 'upgrade' request that the caller
 * has already authenticated and writes the 101. Client: {@link requestUpgrade}
 * sends the GET through node:https (so TLS verification, `servername` and an
 * egress-proxy `agent` work as for any request) and checks the 101: status,
 * `Sec-WebSocket-Accept` and the chosen subprotocol. Any other answer rejects
 * with a `HandshakeError` carrying the status and the reason the server gave.
 */
import { createHash, randomBytes } from 'node:crypto'
import http from 'node:http'
import https from 'node:https'
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { HandshakeError } from './errors.ts'

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
/** Longest part of a refusal body quoted in the error, in bytes. */
const MAX_REASON_BYTES = 512

/** The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`. */
export function acceptKey (key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64')
}

/**
 * Why `req` is not a WebSocket upgrade this server can accept, or undefined
 * when it is. The subprotocol is checked by the caller (it answers 400 with
 * its own text).
 */
export function upgradeProblem (req: IncomingMessage): string | undefined {
  if (req.method !== 'GET') return `method ${req.method ?? ''} cannot open a websocket`
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return 'missing "upgrade: websocket"'
  if (req.headers['sec-websocket-version'] !== '13') return 'unsupported sec-websocket-version (13 is required)'
  const key = req.headers['sec-websocket-key']
  if (key === undefined || !/^[A-Za-z0-9+/]{22}==$/.test(key)) return 'missing or malformed sec-websocket-key'
  return undefined
}

/** Writes the 101 that completes a checked upgrade (see {@link upgradeProblem}). */
export function acceptUpgrade (req: IncomingMessage, socket: Duplex, protocol: string): void {
  socket.write([
    'HTTP/1.1 101 Switching Protocols',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Accept: ${acceptKey(req.headers['sec-websocket-key'] ?? '')}`,
    `Sec-WebSocket-Protocol: ${protocol}`,
    '', ''
  ].join('\r\n'))
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

/** An upgrade in progress: `done` settles once; `abort()` cancels it. */
export interface PendingUpgrade {
  readonly done: Promise<{ socket: Socket, head: Buffer }>
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

  let settle!: (err: Error | undefined, value?: { socket: Socket, head: Buffer }) => void
  const done = new Promise<{ socket: Socket, head: Buffer }>((resolve, reject) => {
    let settled = false
    settle = (err, value) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (err !== undefined) {
        req.destroy()
        reject(err)
      } else {
        resolve(value as { socket: Socket, head: Buffer })
      }
    }
  })
  const timer = setTimeout(() => {
    settle(new HandshakeError(`opening handshake timed out after ${o.timeoutMs} ms`))
  }, o.timeoutMs)

  req.on('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
    const problem = res.statusCode !== 101
      ? `server answered ${res.statusCode ?? 0} to the upgrade`
      : res.headers['sec-websocket-accept'] !== acceptKey(key)
        ? 'server sent a wrong sec-websocket-accept'
        : res.headers['sec-websocket-protocol'] !== o.protocol
          ? `server chose subprotocol "${res.headers['sec-websocket-protocol'] ?? ''}", not ${o.protocol}`
          : undefined
    if (problem !== undefined) {
      socket.destroy()
      settle(new HandshakeError(problem, res.statusCode))
      return
    }
    settle(undefined, { socket, head })
  })
  req.on('response', (res: IncomingMessage) => {
    const status = res.statusCode ?? 0
    let body = ''
    res.setEncoding('utf8')
    res.on('data', (chunk: string) => {
      if (body.length < MAX_REASON_BYTES) body += chunk
    })
    const finish = (): void => { settle(new HandshakeError(refusal(status, res.statusMessage, body), status)) }
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
