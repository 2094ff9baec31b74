/**
 * Serves tunnel streams of kind `hframe` (spec.md section 7.3): a
 * {@link HopDecoder} per stream reads the server's REQUEST_HEAD, DATA and
 * END frames, and each exchange is re-originated by the same code as the
 * HTTP/1.1 hop (proxy-request.ts: h2 pool or HTTP/1.1 upstream), its
 * response written back as frames (hop-exchange.ts).
 *
 * Per idle stream (between exchanges) the agent holds this object and its
 * decoder (a few numbers); the stream's listeners are shared functions. No
 * timer, no buffer, no closure, no HTTP parser. Any frame error, a head while an exchange is open, or a
 * RESPONSE_HEAD resets this stream only; the session and other streams go on.
 */
import type { Duplex } from 'node:stream'
import { LogLimiter, type Logger } from '@tower/mux'
import { HopDecoder, type HopMessage } from '@tower/transport'
import type { Upstream } from './upstream.ts'
import { HopExchange, type HopExchangeHost } from './hop-exchange.ts'
import { proxyRequest } from './proxy-request.ts'

/** Options of {@link createHopHandler}. */
export interface HopHandlerOptions {
  upstream: Upstream
  logger: Logger
  /** Shortest time between two warn lines of one kind (upstream down, bad frames), in milliseconds. */
  warnIntervalMs: number
}

interface Shared {
  readonly upstream: Upstream
  readonly warnings: LogLimiter
  /** Streams being served. */
  readonly live: Set<HopStream>
  closing: boolean
}

// The HopStream a tunnel stream is served by, for the shared listeners.
const kHopStream = Symbol('hopStream')
type Tagged = { [kHopStream]?: HopStream }

/** Serves `hframe` streams and ends idle ones on stop. */
export interface HopHandler {
  /** Takes over a stream whose preamble (kind `hframe`) was read. */
  serve (stream: Duplex, log: Logger): void
  /** Ends (FIN) every stream between exchanges, now and as soon as busy ones finish. */
  closeIdle (): void
  /** Streams being served, for tests. */
  readonly size: number
}

/** Creates the `hframe` stream server. */
export function createHopHandler (o: HopHandlerOptions): HopHandler {
  const live = new Set<HopStream>()
  const state: Shared = { upstream: o.upstream, warnings: new LogLimiter(o.logger, { burst: 1, windowMs: o.warnIntervalMs }), live, closing: false }
  return {
    serve (stream, log) {
      const s = new HopStream(stream, log, state)
      live.add(s)
      s.start()
    },
    closeIdle () {
      state.closing = true
      for (const s of live) s.endIfIdle()
    },
    get size () { return live.size }
  }
}

class HopStream implements HopExchangeHost {
  readonly #stream: Duplex
  readonly #log: Logger
  readonly #state: Shared
  readonly #decoder = new HopDecoder()
  #ex: HopExchange | undefined
  #closed = false

  constructor (stream: Duplex, log: Logger, state: Shared) {
    this.#stream = stream
    this.#log = log
    this.#state = state
  }

  // The stream's listeners, shared by every HopStream (an idle stream holds
  // no closure of its own): each finds its HopStream through the stream.
  static readonly #listeners = {
    data (this: Duplex, chunk: Buffer): void {
      const s = HopStream.#of(this)
      if (s !== undefined) s.#onData(chunk)
    },
    end (this: Duplex): void {
      const s = HopStream.#of(this)
      if (s !== undefined) s.#onEnd()
    },
    error (this: Duplex, err: Error): void {
      const s = HopStream.#of(this)
      if (s !== undefined) s.#log.debug({ reason: err.message }, 'hframe stream failed')
    },
    close (this: Duplex): void {
      const s = HopStream.#of(this)
      if (s !== undefined) s.#onClose()
    }
  }

  static #of (stream: Duplex): HopStream | undefined {
    return (stream as Tagged)[kHopStream]
  }

  start (): void {
    const stream = this.#stream
    const on = HopStream.#listeners
    ;(stream as Tagged)[kHopStream] = this
    stream.on('data', on.data)
    stream.on('end', on.end)
    stream.on('error', on.error)
    stream.on('close', on.close)
    // readPreamble read in paused mode; flowing from here, paused only for backpressure
    stream.resume()
  }

  endIfIdle (): void {
    if (this.#ex === undefined) this.#end()
  }

  #end (): void {
    if (!this.#closed && !this.#stream.writableEnded) this.#stream.end()
  }

  // --- HopExchangeHost ---

  write (chunk: Buffer): boolean {
    if (this.#closed) return true
    return this.#stream.write(chunk)
  }

  onceDrain (cb: () => void): void {
    this.#stream.once('drain', cb)
  }

  resumeInput (): void {
    if (!this.#closed) this.#stream.resume()
  }

  reset (why: string): void {
    if (this.#closed) return
    this.#log.debug({ reason: why }, 'hop exchange failed; resetting the stream')
    this.#closed = true
    this.#ex?.abort()
    this.#stream.destroy()
  }

  responded (): void {
    const ex = this.#ex
    if (ex !== undefined && ex.requestEnded) this.#done()
  }

  debug (fields: object, msg: string): void {
    this.#log.debug(fields, msg)
  }

  // --- input ---

  #onData (chunk: Buffer): void {
    let msgs: HopMessage[]
    try {
      msgs = this.#decoder.push(chunk)
    } catch (err) {
      this.#state.warnings.warn('hop-frame', { reason: (err as Error).message }, 'malformed hop frame from the server; resetting that stream')
      this.reset((err as Error).message)
      return
    }
    for (let i = 0; i < msgs.length && !this.#closed; i++) this.#onMessage(msgs[i]!)
  }

  #onMessage (m: HopMessage): void {
    switch (m.type) {
      case 'request-head': {
        if (this.#ex !== undefined) {
          this.reset('a REQUEST_HEAD while the previous exchange is still answering')
          return
        }
        const ex = new HopExchange(m.head, this)
        if (ex.destroyed) return
        this.#ex = ex
        this.#log.trace({ method: ex.method }, 'hop exchange')
        proxyRequest(ex, this.#state.upstream, this.#log, this.#state.warnings)
        return
      }
      case 'data':
        // the decoder allows DATA only inside an exchange with a body
        if (this.#ex?.pushBody(m.chunk) === false) this.#stream.pause()
        return
      case 'end': {
        const ex = this.#ex
        if (ex === undefined) return
        ex.endBody()
        if (ex.finished && !this.#closed) this.#done()
        return
      }
      case 'response-head':
        this.reset('a RESPONSE_HEAD from the server')
    }
  }

  // both ENDs passed: the stream is idle, ready for the next exchange
  #done (): void {
    this.#ex = undefined
    if (this.#state.closing) this.#end()
  }

  #onEnd (): void {
    if (this.#ex !== undefined) {
      // FIN mid-exchange: the exchange failed
      this.reset('the server ended the stream mid-exchange')
      return
    }
    // an idle stream the server closes: close our side too
    this.#end()
  }

  #onClose (): void {
    this.#closed = true
    this.#ex?.abort()
    this.#ex = undefined
    this.#state.live.delete(this)
  }
}
