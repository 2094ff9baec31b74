/**
 * Error classes of the multiplexer, and the one base class every Tower error
 * extends. The base lives here because mux is the bottom layer: every other
 * package may import it, and mux may import nothing of ours.
 *
 * Callers match on `code`, never on message text. Every code is listed in the
 * root README.
 */

/** Base of every error Tower throws or emits. */
export class TowerError extends Error {
  /** Stable machine-readable code, such as `TOWER_ERR_PROTOCOL`. */
  readonly code: string

  constructor (message: string, code = 'TOWER_ERR', options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** An option passed to a constructor or function is missing or out of range. */
export class InvalidArgumentError extends TowerError {
  constructor (message: string) {
    super(message, 'TOWER_ERR_INVALID_ARG')
  }
}

/** yamux GoAway codes (spec.md, "GoAway"). */
export const GoAwayCode = {
  normal: 0,
  protocolError: 1,
  internalError: 2
} as const
export type GoAwayCode = typeof GoAwayCode[keyof typeof GoAwayCode]

/**
 * The peer broke the wire protocol: a malformed frame, an unknown stream ID,
 * a window violation. The session answers with GoAway(`goAwayCode`) and closes.
 */
export class ProtocolError extends TowerError {
  /** The GoAway code this error causes. */
  readonly goAwayCode: GoAwayCode

  constructor (message: string, goAwayCode: GoAwayCode = GoAwayCode.protocolError) {
    super(message, 'TOWER_ERR_PROTOCOL')
    this.goAwayCode = goAwayCode
  }
}

/** The stream was reset (RST) by the peer or by the local session closing. */
export class StreamResetError extends TowerError {
  constructor (message = 'stream reset') {
    super(message, 'TOWER_ERR_STREAM_RESET')
  }
}

/** The session is closed (GoAway sent or received, or the transport ended). */
export class SessionClosedError extends TowerError {
  constructor (message = 'session closed', options?: ErrorOptions) {
    super(message, 'TOWER_ERR_SESSION_CLOSED', options)
  }
}

/** No keepalive answer arrived in time: the peer is presumed dead. */
export class KeepAliveTimeoutError extends TowerError {
  constructor (ms: number) {
    super(`no keepalive reply within ${ms} ms`, 'TOWER_ERR_KEEPALIVE_TIMEOUT')
  }
}

/**
 * A stream we opened got no ACK (nor RST) within `streamOpenTimeout`
 * milliseconds. The peer is presumed dead: the stream fails with this error
 * and the session closes with it.
 */
export class StreamOpenTimeoutError extends TowerError {
  /** The timeout that expired, in milliseconds. */
  readonly timeout: number

  constructor (ms: number, streamId: number) {
    super(`stream ${streamId} got no ACK within ${ms} ms`, 'TOWER_ERR_STREAM_OPEN_TIMEOUT')
    this.timeout = ms
  }
}

/** Opening a stream would exceed `maxStreams`, or the accept backlog is full. */
export class StreamLimitError extends TowerError {
  constructor (message: string) {
    super(message, 'TOWER_ERR_STREAM_LIMIT')
  }
}
