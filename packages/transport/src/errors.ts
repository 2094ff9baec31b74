/**
 * Transport errors, and a re-export of the shared error base from mux so that
 * packages above transport import every error class from one place.
 *
 * Codes (documented in the root README):
 * - `TOWER_ERR_HANDSHAKE`: the WebSocket handshake with the server failed
 *   (non-101 status, wrong subprotocol, TLS or network error, timeout).
 * - `TOWER_ERR_PREAMBLE`: a stream's preamble is malformed, too long, of an
 *   unknown version or kind, or did not arrive in time.
 * - `TOWER_ERR_WS_PROTOCOL`: the peer broke RFC 6455 framing or sent what a
 *   binary transport does not accept (a text frame, an extension bit).
 * - `TOWER_ERR_WS_CLOSED`: the WebSocket closed abnormally (a code other than
 *   1000/1001/1005), so the bytes in flight are lost.
 * - `TOWER_ERR_WS_BACKLOG`: the peer sent Pings (or a Close) faster than it
 *   read the replies, past the stream's bound on unflushed control replies.
 * - `TOWER_ERR_HOP_FRAME`: a hop frame (stream kind `hframe`) is malformed,
 *   oversized or out of order, or a head to encode is invalid.
 */
import { TowerError } from '@tower/mux'

export {
  TowerError,
  InvalidArgumentError,
  ProtocolError,
  StreamResetError,
  SessionClosedError,
  KeepAliveTimeoutError,
  StreamLimitError,
  GoAwayCode
} from '@tower/mux'

/** The WebSocket handshake with the server failed. */
export class HandshakeError extends TowerError {
  /** HTTP status the server answered instead of 101, if it answered at all. */
  readonly statusCode: number | undefined
  /** Seconds the server asked the agent to wait (`Retry-After`, delay-seconds form), if it said. */
  readonly retryAfterS: number | undefined

  constructor (message: string, statusCode?: number, options?: ErrorOptions & { retryAfterS?: number }) {
    super(message, 'TOWER_ERR_HANDSHAKE', options)
    this.statusCode = statusCode
    this.retryAfterS = options?.retryAfterS
  }
}

/** A stream preamble is malformed, too long, or late. */
export class PreambleError extends TowerError {
  constructor (message: string) {
    super(message, 'TOWER_ERR_PREAMBLE')
  }
}

/** The peer broke WebSocket framing; the connection is closed with `closeCode`. */
export class WsFrameError extends TowerError {
  /** The close code sent to the peer (RFC 6455 §7.4.1): 1002, 1003 or 1007. */
  readonly closeCode: number

  constructor (message: string, closeCode: number) {
    super(`websocket protocol error: ${message}`, 'TOWER_ERR_WS_PROTOCOL')
    this.closeCode = closeCode
  }
}

/** The WebSocket closed with an abnormal code; data in flight may be lost. */
export class WsClosedError extends TowerError {
  /** The WebSocket close code (RFC 6455 §7.4), e.g. 1006 for a dropped connection. */
  readonly closeCode: number

  constructor (closeCode: number, reason: string) {
    super(`websocket closed abnormally (${closeCode}${reason ? ': ' + reason : ''})`, 'TOWER_ERR_WS_CLOSED')
    this.closeCode = closeCode
  }
}

/**
 * The peer made us queue more control replies (Pong, Close) than
 * `maxControlBacklog` allows without reading them: a ping flood.
 */
export class WsBacklogError extends TowerError {
  /** Bytes of control replies that were waiting in the socket, in bytes. */
  readonly backlog: number

  constructor (backlog: number, limit: number) {
    super(`peer does not read its control replies: ${backlog} bytes unflushed (limit ${limit})`, 'TOWER_ERR_WS_BACKLOG')
    this.backlog = backlog
  }
}

/**
 * A hop frame is malformed, oversized or out of the exchange order, or a
 * head given to an encoder is invalid. On a stream it resets that stream only.
 */
export class HopFrameError extends TowerError {
  constructor (message: string) {
    super(`hop frame: ${message}`, 'TOWER_ERR_HOP_FRAME')
  }
}
