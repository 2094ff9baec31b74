/**
 * The pool of HTTP/2 sessions to the upstream, for plain (non-upgrade)
 * requests.
 *
 * - Protocol: the first dial learns by ALPN whether the upstream speaks h2.
 *   When it does not, every request goes to the HTTP/1.1 pool until
 *   {@link H2Pool.recheck} (called when the agent's tunnel reconnects), so an
 *   apiserver that gains or loses h2 behind a restart is noticed.
 * - Admission: a request takes a slot on a session below the peer's
 *   SETTINGS_MAX_CONCURRENT_STREAMS; when every session is full, one more is
 *   dialled, up to `maxSessions`. Past that, or past `maxWaiters` waiting
 *   requests, a request goes over HTTP/1.1 instead: a watch never waits
 *   unseen for a slot. One dial at a time; waiters beyond what it will hold
 *   start the next dial when it is up.
 * - Memory: sessions and waiters are bounded; nothing is allocated per idle
 *   stream but node:http2's own stream object (timers are per session).
 */
import type { TLSSocket } from 'node:tls'
import type { Logger } from '@tower/mux'
import { connectAlpn, type AlpnTarget } from './h2-connect.ts'
import { H2Session, type H2SessionOptions } from './h2-session.ts'
import type { AgentMetrics } from './metrics.ts'

/** Options of {@link H2Pool}. */
export interface H2PoolOptions {
  target: AlpnTarget
  logger: Logger
  /** Sessions open at once, at most. */
  maxSessions: number
  /** Requests waiting for a session being dialled, at most; more go over HTTP/1.1. */
  maxWaiters: number
  /** Limit on TCP + TLS + the peer's SETTINGS, in milliseconds. */
  connectTimeoutMs: number
  /** Time between liveness checks of a session, in milliseconds. */
  pingIntervalMs: number
  /** Time a PING may take before its session is destroyed, in milliseconds. */
  pingTimeoutMs: number
  /**
   * Offered the probe's socket when ALPN chose HTTP/1.1, just before the
   * waiting requests fall back, so the first of them can use it instead of
   * dialling again; the returned function is called right after them and
   * must destroy the socket if none took it.
   */
  adoptHttp1?: (socket: TLSSocket) => () => void
  /** Counts dials (duration by the protocol ALPN chose, failures). */
  metrics?: AgentMetrics | undefined
}

/**
 * What {@link H2Pool.acquire} hands a request: an error (the upstream cannot
 * be reached), `null` (use HTTP/1.1), or a session with a free slot, which
 * the callback must use synchronously or leave.
 */
export type AcquireCallback = (err: Error | undefined, session: H2Session | null) => void

/** A snapshot of the pool, for tests and debugging. */
export interface H2PoolStats {
  /** What ALPN said: `unknown` before the first dial. */
  protocol: 'unknown' | 'h2' | 'http/1.1'
  /** Sessions open now (draining ones included). */
  sessions: number
  /** Streams open now over all sessions. */
  streams: number
  /** Requests waiting for a dial now. */
  waiting: number
  /** Sessions dialled so far. */
  dials: number
  /** Requests sent over h2 so far (a replay counts again). */
  h2Requests: number
  /** Requests sent to the HTTP/1.1 pool because every session and waiting place was taken. */
  overflows: number
  /** Requests replayed after the peer said it had not processed them. */
  retries: number
  /** The peer's SETTINGS_MAX_CONCURRENT_STREAMS on the newest session (Infinity when it sent none); undefined before one. */
  peerMaxStreams: number | undefined
}

/** Sessions' flow-control and memory settings (see H2SessionOptions). */
const SESSION_TUNING = { streamWindowBytes: 1024 * 1024, sessionWindowBytes: 16 * 1024 * 1024, maxSessionMemoryMb: 64 }

/** See the module comment. */
export class H2Pool {
  readonly #o: H2PoolOptions
  readonly #log: Logger
  readonly #sessionOptions: H2SessionOptions
  readonly #sessions = new Set<H2Session>()
  #waiters: AcquireCallback[] = []
  #dialing = false
  #protocol: H2PoolStats['protocol'] = 'unknown'
  #closed = false
  #dials = 0
  #h2Requests = 0
  #overflows = 0
  #retries = 0
  #peerMaxStreams: number | undefined

  constructor (o: H2PoolOptions) {
    this.#o = o
    this.#log = o.logger
    this.#sessionOptions = { authority: o.target.authority, logger: o.logger, pingIntervalMs: o.pingIntervalMs, pingTimeoutMs: o.pingTimeoutMs, ...SESSION_TUNING }
  }

  /** False when the last dial found no h2: use HTTP/1.1 without asking. */
  get h2 (): boolean {
    return this.#protocol !== 'http/1.1' && !this.#closed
  }

  /**
   * Finds a session with a free slot (synchronously when one exists), dials
   * one, or answers `null` for HTTP/1.1. The session passed to `cb` has a
   * free slot only during the call.
   */
  acquire (cb: AcquireCallback): void {
    if (!this.h2) {
      cb(undefined, null)
      return
    }
    const s = this.#pick()
    if (s !== undefined) {
      cb(undefined, s)
      return
    }
    if (this.#waiters.length >= this.#o.maxWaiters || (!this.#dialing && this.#sessions.size >= this.#o.maxSessions)) {
      this.#overflows++
      cb(undefined, null)
      return
    }
    this.#waiters.push(cb)
    if (!this.#dialing) this.#dial()
  }

  /** Counts a stream opened on a session from {@link acquire} (for stats). */
  opened (retry: boolean): void {
    this.#h2Requests++
    if (retry) this.#retries++
  }

  /** Forgets an HTTP/1.1-only verdict, so that the next request probes ALPN again. */
  recheck (): void {
    if (this.#protocol === 'http/1.1') this.#protocol = 'unknown'
  }

  /** A snapshot of the counters. */
  stats (): H2PoolStats {
    let streams = 0
    for (const s of this.#sessions) {
      streams += s.streams
      this.#peerMaxStreams = s.limit
    }
    return {
      protocol: this.#protocol,
      sessions: this.#sessions.size,
      streams,
      waiting: this.#waiters.length,
      dials: this.#dials,
      h2Requests: this.#h2Requests,
      overflows: this.#overflows,
      retries: this.#retries,
      peerMaxStreams: this.#peerMaxStreams
    }
  }

  /** Destroys every session (their streams error) and fails waiters. */
  close (): void {
    this.#closed = true
    for (const s of [...this.#sessions]) s.destroy()
    this.#flush(null)
  }

  // The fullest session that still has room: keeps streams packed, so that
  // idle sessions empty and get closed.
  #pick (): H2Session | undefined {
    let best: H2Session | undefined
    for (const s of this.#sessions) {
      if (s.available && (best === undefined || s.streams > best.streams)) best = s
    }
    return best
  }

  #dial (): void {
    this.#dialing = true
    this.#dials++
    const started = Date.now()
    connectAlpn(this.#o.target, this.#o.connectTimeoutMs).then(async (socket) => {
      this.#o.metrics?.upstreamDialed(socket.alpnProtocol === 'h2' ? 'h2' : 'http/1.1', Date.now() - started)
      if (socket.alpnProtocol !== 'h2') {
        if (this.#protocol !== 'http/1.1') this.#log.info({ upstream: this.#o.target.authority, alpn: socket.alpnProtocol }, 'upstream does not offer HTTP/2; using HTTP/1.1')
        this.#protocol = 'http/1.1'
        this.#dialing = false
        const release = this.#o.adoptHttp1?.(socket)
        if (release === undefined) socket.destroy()
        this.#flush(null)
        release?.()
        return
      }
      const left = Math.max(1, this.#o.connectTimeoutMs - (Date.now() - started))
      const session = await H2Session.start(socket, this.#sessionOptions, {
        onSlot: (s) => this.#serve(s),
        onClose: (s) => this.#sessions.delete(s),
        canRetire: (s) => this.#canRetire(s)
      }, left)
      if (this.#closed) {
        session.destroy()
        return
      }
      if (this.#protocol !== 'h2') this.#log.debug({ upstream: this.#o.target.authority, maxConcurrentStreams: session.limit }, 'upstream speaks HTTP/2')
      this.#protocol = 'h2'
      this.#sessions.add(session)
    }).then(() => {
      this.#dialing = false
      if (!this.h2) {
        this.#flush(null)
        return
      }
      const s = this.#pick()
      if (s !== undefined) this.#serve(s)
      this.#next()
    }, (err: Error) => {
      this.#o.metrics?.upstreamDialFailed(err)
      this.#dialing = false
      this.#flush(err)
    })
  }

  // Waiters left after a dial: another dial while allowed, else HTTP/1.1.
  #next (): void {
    if (this.#waiters.length === 0 || this.#dialing) return
    const s = this.#pick()
    if (s !== undefined) {
      this.#serve(s)
      if (this.#waiters.length === 0) return
    }
    if (this.#sessions.size < this.#o.maxSessions) {
      this.#dial()
      return
    }
    this.#overflows += this.#waiters.length
    this.#flush(null)
  }

  // A slot freed (or a session came up): hand it to waiting requests in order.
  #serve (s: H2Session): void {
    while (this.#waiters.length > 0 && s.available) {
      const cb = this.#waiters.shift() as AcquireCallback
      cb(undefined, s)
    }
  }

  #flush (answer: Error | null): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const cb of waiters) {
      if (answer === null) cb(undefined, null)
      else cb(answer, null)
    }
  }

  #canRetire (idle: H2Session): boolean {
    for (const s of this.#sessions) {
      if (s !== idle && !s.draining) return true
    }
    return false
  }
}
