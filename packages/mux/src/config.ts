/**
 * Session options, their defaults and their validation. Defaults favour a
 * WAN link between agent and server; `@tower/transport` tunes them for Tower.
 */
import { InvalidArgumentError } from './errors.ts'
import type { Logger } from './logger.ts'
import { silentLogger } from './logger.ts'
import { MAX_UINT32, SPEC_INITIAL_WINDOW } from './constants.ts'

/** Options of `new Session(transport, options)`. */
export interface SessionOptions {
  /** Required. `true` on the side that opens odd stream IDs (in Tower: the server), `false` for even IDs. */
  client: boolean
  /** Where the session logs; a child `{ component: 'mux', side }` is derived. Default: silent. */
  logger?: Logger
  /**
   * Receive window of every stream at open, in bytes. Default 256 KiB, which
   * is also the minimum: the peer assumes 256 KiB before any update arrives.
   * More than 256 KiB is announced with the SYN or ACK.
   */
  initialWindow?: number
  /**
   * Largest receive window of a stream, in bytes. A stream whose reader keeps
   * up but whose window runs dry within one round trip doubles its window,
   * up to this bound. It bounds the bytes buffered for one stream whose
   * reader stalls. Default 4 MiB; set it equal to `initialWindow` for a fixed
   * window.
   */
  maxWindow?: number
  /** Most streams open at once, in both directions together. `open()` beyond it throws; an inbound SYN beyond it is reset. Default 4096. */
  maxStreams?: number
  /**
   * Most inbound streams held while the session has no `'stream'` listener.
   * An inbound SYN beyond it is reset. Default 256.
   */
  acceptBacklog?: number
  /** Interval between keepalive pings, in milliseconds; 0 turns keepalive off. Default 30,000. */
  keepAliveInterval?: number
  /** How long a keepalive ping (and `ping()`) waits for its reply, in milliseconds. Default 10,000. */
  keepAliveTimeout?: number
  /** Largest payload of a Data frame this side sends, in bytes. Default 64 KiB. */
  maxFrameSize?: number
  /**
   * Whether the peer may open streams. `false` answers every inbound SYN with
   * RST at once, without allocating a stream or keeping its payload (the
   * Tower server's session: agents never open streams). Default `true`.
   */
  acceptStreams?: boolean
  /**
   * How long a stream we open may wait for the peer's ACK, in milliseconds.
   * When it expires the stream fails with `StreamOpenTimeoutError` and the
   * session closes: a peer that does not answer a SYN is presumed dead.
   * Like `keepAliveTimeout`, it includes the time the SYN and the ACK wait
   * behind other frames on a busy link, hence the generous default.
   * Default 30,000 (hashicorp/yamux uses 75 s); 0 disables it.
   */
  streamOpenTimeout?: number
}

/** Options after defaults and validation. */
export interface SessionConfig {
  readonly client: boolean
  readonly logger: Logger
  readonly initialWindow: number
  readonly maxWindow: number
  readonly maxStreams: number
  readonly acceptBacklog: number
  readonly keepAliveInterval: number
  readonly keepAliveTimeout: number
  readonly maxFrameSize: number
  readonly acceptStreams: boolean
  readonly streamOpenTimeout: number
}

/** Default values of every optional {@link SessionOptions} field. */
export const defaultConfig = {
  initialWindow: SPEC_INITIAL_WINDOW,
  maxWindow: 4 * 1024 * 1024,
  maxStreams: 4096,
  acceptBacklog: 256,
  keepAliveInterval: 30_000,
  keepAliveTimeout: 10_000,
  maxFrameSize: 64 * 1024,
  acceptStreams: true,
  streamOpenTimeout: 30_000
} as const

function integer (name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, got ${String(value)}`)
  }
  return value
}

/**
 * Applies defaults and validates `options`.
 * @throws {InvalidArgumentError} naming the first bad option.
 */
export function verifyConfig (options: SessionOptions): SessionConfig {
  if (options === null || typeof options !== 'object') {
    throw new InvalidArgumentError('options must be an object with at least { client }')
  }
  if (typeof options.client !== 'boolean') {
    throw new InvalidArgumentError(`client must be a boolean, got ${String(options.client)}`)
  }
  const logger = options.logger ?? silentLogger
  if (typeof logger.child !== 'function' || typeof logger.error !== 'function') {
    throw new InvalidArgumentError('logger must implement the Logger interface (trace, debug, info, warn, error, child)')
  }
  const initialWindow = integer('initialWindow', options.initialWindow ?? defaultConfig.initialWindow, SPEC_INITIAL_WINDOW, MAX_UINT32 >>> 1)
  const acceptStreams = options.acceptStreams ?? defaultConfig.acceptStreams
  if (typeof acceptStreams !== 'boolean') {
    throw new InvalidArgumentError(`acceptStreams must be a boolean, got ${String(acceptStreams)}`)
  }
  const maxWindow = integer('maxWindow', options.maxWindow ?? Math.max(defaultConfig.maxWindow, initialWindow), initialWindow, MAX_UINT32 >>> 1)
  return {
    client: options.client,
    logger,
    initialWindow,
    maxWindow,
    maxStreams: integer('maxStreams', options.maxStreams ?? defaultConfig.maxStreams, 1, 2 ** 30),
    acceptBacklog: integer('acceptBacklog', options.acceptBacklog ?? defaultConfig.acceptBacklog, 0, 2 ** 30),
    keepAliveInterval: integer('keepAliveInterval', options.keepAliveInterval ?? defaultConfig.keepAliveInterval, 0, 2 ** 31 - 1),
    keepAliveTimeout: integer('keepAliveTimeout', options.keepAliveTimeout ?? defaultConfig.keepAliveTimeout, 1, 2 ** 31 - 1),
    maxFrameSize: integer('maxFrameSize', options.maxFrameSize ?? defaultConfig.maxFrameSize, 1024, 16 * 1024 * 1024),
    acceptStreams,
    streamOpenTimeout: integer('streamOpenTimeout', options.streamOpenTimeout ?? defaultConfig.streamOpenTimeout, 0, 2 ** 31 - 1)
  }
}
