/**
 * A small HTTP/2 client pool over node:http2, shared by the load client's h2
 * jobs and by the l7-chain baseline's exit hop. It behaves like Go's h2
 * transport (what client-go uses): a request goes on an open session with a
 * free stream slot under the peer's SETTINGS_MAX_CONCURRENT_STREAMS, and a new
 * session is opened only when every one is full, so N streams need
 * ceil(N / max) sessions. `minSessions` sessions are opened up front and
 * requests spread over them (fewest active streams first), so a "handful of
 * sessions" client can be asked for explicitly.
 *
 * A session that did not negotiate `h2` by ALPN is refused: a path that
 * answers h2 callers with HTTP/1.1 must show up as a failure, not as a
 * silently slower row.
 */
import http2 from 'node:http2'
import net from 'node:net'
import { once } from 'node:events'

/** Stream flow-control window the pool offers, bytes: large, so one bulk stream is not window-bound. */
export const H2_STREAM_WINDOW = 8 * 1024 * 1024
/** Session (connection) flow-control window the pool offers, bytes. */
export const H2_SESSION_WINDOW = 64 * 1024 * 1024

/** Where and how a pool connects. */
export interface H2PoolOptions {
  /** https://host:port of the h2 server. */
  origin: string
  /** CA PEM for the server certificate. */
  ca?: string
  /** Client certificate and key PEM (mutual TLS). */
  cert?: string
  key?: string
  /** SNI / verification name; omitted for an IP origin. */
  servername?: string
  /** Sessions opened before the first request and kept (default 1). */
  minSessions?: number
  /** Upper bound on sessions (default 1,000): a peer with a tiny stream limit cannot make the pool unbounded. */
  maxSessions?: number
  /** Milliseconds to wait for a session's TLS + SETTINGS (default 10,000). */
  connectTimeoutMs?: number
}

interface Slot { session: http2.ClientHttp2Session, active: number, max: number, dead: boolean }

/** A pool of h2 sessions to one origin. */
export class H2Pool {
  #o: Required<Pick<H2PoolOptions, 'minSessions' | 'maxSessions' | 'connectTimeoutMs'>> & H2PoolOptions
  #slots: Slot[] = []
  #opening: Promise<Slot> | undefined
  #closed = false

  constructor (o: H2PoolOptions) {
    this.#o = { minSessions: 1, maxSessions: 1000, connectTimeoutMs: 10_000, ...o }
  }

  /** Sessions currently open. */
  get sessions (): number { return this.#slots.filter((s) => !s.dead).length }

  /** Opens `minSessions` sessions. */
  async warm (): Promise<void> {
    while (this.sessions < this.#o.minSessions) await this.#open()
  }

  async #open (): Promise<Slot> {
    if (this.#opening !== undefined) return await this.#opening
    this.#opening = (async () => {
      const u = new URL(this.#o.origin)
      const session = http2.connect(this.#o.origin, {
        ca: this.#o.ca,
        cert: this.#o.cert,
        key: this.#o.key,
        ...(this.#o.servername !== undefined ? { servername: this.#o.servername } : net.isIP(u.hostname) === 0 ? { servername: u.hostname } : {}),
        settings: { initialWindowSize: H2_STREAM_WINDOW, enablePush: false },
        maxSessionMemory: 64
      })
      const slot: Slot = { session, active: 0, max: 100, dead: false }
      const ac = new AbortController()
      const timer = setTimeout(() => ac.abort(), this.#o.connectTimeoutMs)
      try {
        session.once('error', () => { slot.dead = true })
        session.once('close', () => { slot.dead = true })
        session.once('goaway', () => { slot.dead = true })
        await Promise.race([once(session, 'remoteSettings', { signal: ac.signal }),
          once(session, 'error', { signal: ac.signal }).then(([err]) => { throw err })])
        const alpn = session.alpnProtocol
        if (alpn !== 'h2') throw new Error(`${this.#o.origin}: server did not negotiate h2 (ALPN ${String(alpn)})`)
        session.setLocalWindowSize(H2_SESSION_WINDOW)
        slot.max = session.remoteSettings.maxConcurrentStreams ?? 100
        session.on('remoteSettings', (s) => { slot.max = s.maxConcurrentStreams ?? slot.max })
        // Our own keep-alive of the pool's session must not keep a finished process alive.
        session.unref()
      } catch (err) {
        session.destroy()
        if (ac.signal.aborted) throw new Error(`${this.#o.origin}: no h2 session in ${this.#o.connectTimeoutMs} ms`)
        // The server's TLS refused the ALPN list (offers no h2): say so rather than quote OpenSSL.
        if ((err as { code?: string }).code === 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL') throw new Error(`${this.#o.origin}: server did not negotiate h2 (TLS alert: no application protocol)`)
        throw err
      } finally {
        clearTimeout(timer)
        ac.abort()
      }
      this.#slots.push(slot)
      return slot
    })()
    try { return await this.#opening } finally { this.#opening = undefined }
  }

  /**
   * A session with a free stream slot (the least busy), opening one when all
   * are full. The slot is taken here, before any await: counted after the
   * caller's `await`, every waiter woken by the same new session saw it empty
   * and took it, and nghttp2 queued the streams past the peer's limit
   * unsent (166 of 10,000 idle watches through passthrough never opened).
   */
  async #acquire (): Promise<Slot> {
    for (;;) {
      if (this.#closed) throw new Error('h2 pool closed')
      this.#slots = this.#slots.filter((s) => !s.dead)
      let best: Slot | undefined
      for (const s of this.#slots) if (s.active < s.max && (best === undefined || s.active < best.active)) best = s
      if (best !== undefined && (this.#slots.length >= this.#o.minSessions || best.active === 0)) { best.active++; return best }
      if (this.#slots.length >= this.#o.maxSessions) {
        if (best !== undefined) { best.active++; return best }
        throw new Error(`h2 pool: ${this.#o.maxSessions} sessions full`)
      }
      await this.#open()
    }
  }

  /**
   * Starts one request; `headers` are plain request headers plus the
   * pseudo-headers `:method` and `:path` (`:authority` defaults to the origin's).
   */
  async request (headers: http2.OutgoingHttpHeaders, opts: { endStream?: boolean } = {}): Promise<http2.ClientHttp2Stream> {
    const slot = await this.#acquire()
    let stream: http2.ClientHttp2Stream
    try {
      stream = slot.session.request(headers, { endStream: opts.endStream ?? true })
    } catch (err) {
      slot.active--
      throw err
    }
    stream.once('close', () => { slot.active-- })
    return stream
  }

  /** Closes every session (streams still open are destroyed). */
  close (): void {
    this.#closed = true
    for (const s of this.#slots) s.session.destroy()
    this.#slots = []
  }
}
