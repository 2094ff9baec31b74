/**
 * A yamux session over any Duplex byte stream (TCP socket, WebSocket adapter,
 * in-memory pair). It demultiplexes incoming frames to streams, answers pings,
 * and ends on GoAway, transport end or error, keepalive timeout or a protocol
 * violation.
 *
 * Frames for a stream that is not in the table:
 * - an ID the peer could have used and closed (ours below the next ID, or the
 *   peer's at most the highest it opened) is a stream that was recently
 *   closed or reset: the frame and its payload are dropped;
 * - any other ID was never opened: protocol error.
 *
 * Inbound streams: a SYN with `acceptStreams: false`, over `maxStreams`,
 * after `close()`, or while `acceptBacklog` streams already wait for a
 * `'stream'` listener is answered with RST, and no stream is allocated.
 * Otherwise the stream is ACKed and emitted at once, or held until a listener
 * is added. Refusals are logged through a LogLimiter, so a SYN flood gives a
 * few lines and a count.
 *
 * Payload for a stream not in the table is dropped as it arrives, within a
 * DiscardBudget: the window the peer still held on refused and gone streams.
 * More than that is a protocol error, so dropping costs no memory and a peer
 * can make us drop no more than it could legally send.
 *
 * Failure: a protocol error sends GoAway(protocol error); every stream left is
 * destroyed with SessionClosedError; the reason is logged and passed to
 * `'close'`. A listener that throws while the session delivers data is caught
 * and ends the session with GoAway(internal error) instead of crashing.
 */
import { EventEmitter } from 'node:events'
import type { Duplex } from 'node:stream'
import type { SessionConfig, SessionOptions } from './config.ts'
import { verifyConfig } from './config.ts'
import { CONTROL_BACKLOG_LIMIT, Flag, FrameType, LOG_BURST, LOG_WINDOW_MS, MAX_STREAM_ID, SPEC_INITIAL_WINDOW, TRANSPORT_CLOSE_GRACE_MS } from './constants.ts'
import { FrameDecoder } from './decoder.ts'
import type { FrameHandler } from './decoder.ts'
import { GoAwayCode, InvalidArgumentError, ProtocolError, SessionClosedError, StreamLimitError, StreamOpenTimeoutError } from './errors.ts'
import { DiscardBudget } from './discard-budget.ts'
import { describeFrame } from './frame.ts'
import { FrameWriter } from './frame-writer.ts'
import { LogLimiter } from './log-limiter.ts'
import type { Logger } from './logger.ts'
import { Pinger } from './pinger.ts'
import { kAccept, kCanReceive, kCredit, kData, kFlags, kOpen, kRemoteEnded, kSessionClosed, kWindowUpdate, kWritable, MuxStream } from './stream.ts'
import type { StreamHost } from './stream.ts'

/** Events of a {@link Session}. */
export interface SessionEvents {
  /** An inbound stream, already ACKed. */
  stream: [stream: MuxStream]
  /** The peer sent GoAway(normal): no new outbound streams; existing ones go on. */
  goaway: [code: number]
  /** Emitted once when the session has ended; `err` is undefined after a clean close. */
  close: [err?: Error]
  /** A GoAway frame was queued to the peer, with its code (for metrics). */
  goAwaySent: [code: number]
  /** A GoAway frame arrived, with its code, before the session acts on it (for metrics). */
  goAwayReceived: [code: number]
  /** A write waited because the peer's window for its stream was used up (for metrics). */
  windowStall: []
}

const goAwayNames: Record<number, string> = { 0: 'normal', 1: 'protocol error', 2: 'internal error' }

/** A yamux session. See the module header and ../spec.md. */
export class Session extends EventEmitter<SessionEvents> {
  readonly #transport: Duplex
  readonly #config: SessionConfig
  readonly #log: Logger
  readonly #limiter: LogLimiter
  readonly #trace: boolean
  readonly #writer: FrameWriter
  readonly #decoder: FrameDecoder
  readonly #pinger: Pinger
  readonly #host: StreamHost
  readonly #streams = new Map<number, MuxStream>()
  #backlog: MuxStream[] = []
  #waiting = new Set<MuxStream>()
  #nextId: number
  #maxInboundId = 0
  #closed = false
  #localGoAway = false
  #remoteGoAway = false
  #rtt = 0
  #rx: MuxStream | null = null
  #rxFin = false
  readonly #discard = new DiscardBudget()

  /**
   * @param transport the byte stream to run over; the session owns it and ends it when done.
   * @throws {InvalidArgumentError} naming a bad option.
   */
  constructor (transport: Duplex, options: SessionOptions) {
    super()
    if (transport === null || typeof transport !== 'object' || typeof transport.write !== 'function' || typeof transport.on !== 'function') {
      throw new InvalidArgumentError('transport must be a Duplex stream')
    }
    const config = verifyConfig(options)
    this.#transport = transport
    this.#config = config
    this.#log = config.logger.child({ component: 'mux', side: config.client ? 'client' : 'server' })
    this.#limiter = new LogLimiter(this.#log, { burst: LOG_BURST, windowMs: LOG_WINDOW_MS })
    this.#trace = (config.logger as { isLevelEnabled?: (level: string) => boolean }).isLevelEnabled?.('trace') === true
    this.#nextId = config.client ? 1 : 2
    this.#writer = new FrameWriter(transport, {
      onWritable: () => { this.#resumeWaiting() },
      controlLimit: CONTROL_BACKLOG_LIMIT,
      maxDataFrame: config.maxFrameSize,
      onOverflow: (backlog) => {
        this.#terminate(new SessionClosedError(`peer does not read: ${backlog} bytes unflushed`), null)
      }
    })
    this.#decoder = new FrameDecoder(this.#frameHandler(), config.maxWindow)
    this.#pinger = new Pinger({
      interval: config.keepAliveInterval,
      timeout: config.keepAliveTimeout,
      send: (flags, value) => { this.#control(FrameType.ping, flags, 0, value) },
      onRtt: (ms) => { this.#rtt = ms },
      onDead: (err) => { this.#terminate(err, null) }
    })
    this.#host = {
      writer: this.#writer,
      config,
      isClosed: () => this.#closed,
      rtt: () => this.#rtt,
      sampleRtt: (ms) => { if (this.#rtt === 0) this.#rtt = ms },
      waitWritable: (stream) => {
        this.#waiting.add(stream)
        this.#writer.waitWritable()
      },
      release: (stream) => { this.#release(stream) },
      windowStalled: () => { this.emit('windowStall') },
      openTimedOut: (stream) => { this.#openTimedOut(stream) }
    }

    transport.on('data', (chunk: Buffer) => { this.#receive(chunk) })
    transport.on('end', () => {
      this.#terminate(this.#remoteGoAway ? undefined : new SessionClosedError('transport ended'), null)
    })
    transport.on('error', (err: Error) => {
      this.#terminate(new SessionClosedError(`transport error: ${err.message}`, { cause: err }), null)
    })
    transport.on('close', () => {
      this.#terminate(this.#remoteGoAway ? undefined : new SessionClosedError('transport closed'), null)
    })
    // The typed emitter does not list 'newListener'; it is still emitted.
    ;(this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event === 'stream' && this.#backlog.length > 0) process.nextTick(() => { this.#drainBacklog() })
    })
    this.#pinger.start()
    // Window growth needs the round-trip time on both sides, and the side
    // that only accepts streams gets no SYN/ACK sample: measure it once.
    if (config.maxWindow > config.initialWindow) this.#pinger.ping().catch(() => {})
    if (transport.destroyed) process.nextTick(() => { this.#terminate(new SessionClosedError('transport closed'), null) })
  }

  /** Streams currently in the table (open, half-closed, or waiting to be accepted). */
  get numStreams (): number { return this.#streams.size }

  /** Whether the session has ended. */
  get closed (): boolean { return this.#closed }

  /**
   * Whether `open()` may be called: false after close() or destroy(), after a
   * GoAway from the peer, once the session has ended, and when stream IDs are
   * used up. `maxStreams` is not considered: it frees up as streams finish.
   */
  get canOpen (): boolean {
    return !this.#closed && !this.#localGoAway && !this.#remoteGoAway && this.#nextId <= MAX_STREAM_ID
  }

  /** Last measured round-trip time in milliseconds, 0 while unknown. */
  get rtt (): number { return this.#rtt }

  /**
   * Opens a stream. The SYN is queued at once and leaves with the next flush,
   * together with any data written in the same tick.
   * @throws {SessionClosedError} after close(), destroy(), or a GoAway from the peer.
   * @throws {StreamLimitError} with `maxStreams` streams open or the stream IDs used up.
   */
  open (): MuxStream {
    if (this.#closed || this.#localGoAway) throw new SessionClosedError(this.#closed ? 'session closed' : 'session is closing')
    if (this.#remoteGoAway) throw new SessionClosedError('peer sent GoAway: no new streams')
    if (this.#streams.size >= this.#config.maxStreams) {
      throw new StreamLimitError(`maxStreams (${this.#config.maxStreams}) streams already open`)
    }
    if (this.#nextId > MAX_STREAM_ID) throw new StreamLimitError('stream IDs exhausted')
    const id = this.#nextId
    this.#nextId += 2
    const stream = new MuxStream(id, this.#host)
    this.#streams.set(id, stream)
    stream[kOpen]()
    return stream
  }

  /**
   * Measures the round trip to the peer.
   * @returns the round-trip time in milliseconds.
   * @throws {KeepAliveTimeoutError} when no reply comes within `keepAliveTimeout` (the session stays up).
   * @throws {SessionClosedError} when the session ends first.
   */
  async ping (): Promise<number> {
    if (this.#closed) throw new SessionClosedError()
    return await this.#pinger.ping()
  }

  /**
   * Closes gracefully: sends GoAway(normal), resets inbound streams nobody
   * accepted, refuses new ones, and ends the transport once the streams left
   * have finished. Use destroy() to stop waiting.
   */
  close (): void {
    if (this.#closed || this.#localGoAway) return
    this.#localGoAway = true
    this.#log.debug({ streams: this.#streams.size }, 'closing: GoAway sent, waiting for streams to finish')
    this.#control(FrameType.goAway, 0, 0, GoAwayCode.normal)
    this.emit('goAwaySent', GoAwayCode.normal)
    for (const stream of this.#backlog.slice()) stream.destroy()
    if (this.#streams.size === 0) this.#terminate(undefined, null)
  }

  /**
   * Ends the session at once: sends GoAway (normal without `err`, the error's
   * GoAway code for a ProtocolError, internal error otherwise), destroys every
   * stream with SessionClosedError and ends the transport.
   */
  destroy (err?: Error): void {
    if (this.#closed) return
    let code: number | null = null
    if (err instanceof ProtocolError) code = err.goAwayCode
    else if (err !== undefined) code = GoAwayCode.internalError
    else if (!this.#localGoAway) code = GoAwayCode.normal
    this.#terminate(err, code)
  }

  #frameHandler (): FrameHandler {
    return {
      onHeader: (type, flags, streamId, length) => { this.#onHeader(type, flags, streamId, length) },
      onPayload: (piece) => {
        const rx = this.#rx
        if (rx !== null && !rx.destroyed) rx[kData](piece)
      },
      onPayloadEnd: () => {
        const rx = this.#rx
        this.#rx = null
        if (rx !== null && this.#rxFin && !rx.destroyed) rx[kFlags](Flag.fin)
      }
    }
  }

  #receive (chunk: Buffer): void {
    if (this.#closed) return
    try {
      this.#decoder.push(chunk)
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.#terminate(err, err.goAwayCode)
      } else {
        const error = err instanceof Error ? err : new Error(String(err))
        this.#log.error({ err: error }, 'exception while delivering stream data')
        this.#terminate(error, GoAwayCode.internalError)
      }
    }
  }

  #onHeader (type: number, flags: number, id: number, length: number): void {
    if (this.#trace) this.#log.trace({ frame: describeFrame(type, flags, id, length) }, 'frame received')
    if (type === FrameType.ping) {
      if (id !== 0) throw new ProtocolError(`ping on stream ${id}`)
      if ((flags & Flag.syn) !== 0) this.#control(FrameType.ping, Flag.ack, 0, length)
      else if ((flags & Flag.ack) !== 0) this.#pinger.reply(length)
      return
    }
    if (type === FrameType.goAway) {
      if (id !== 0) throw new ProtocolError(`GoAway on stream ${id}`)
      this.#onGoAway(length)
      return
    }
    this.#rx = null
    if (id === 0) throw new ProtocolError(`${type === FrameType.data ? 'Data' : 'WindowUpdate'} frame on stream 0`)
    let stream = this.#streams.get(id)
    if ((flags & Flag.syn) !== 0) {
      if (stream !== undefined) throw new ProtocolError(`duplicate SYN for stream ${id}`)
      if (this.#isLocal(id)) throw new ProtocolError(`SYN for stream ${id}, which has our parity`)
      stream = this.#incoming(id)
      // Answering the SYN can end the session (a peer that does not read).
      if (this.#closed) return
    } else if (stream === undefined) {
      if (this.#neverOpened(id)) throw new ProtocolError(`frame for stream ${id}, which was never opened`)
      if (this.#trace) this.#log.trace({ stream: id }, 'frame for a closed stream dropped')
    }
    if (stream === undefined || (flags & Flag.rst) !== 0) {
      if (stream !== undefined) stream[kFlags](Flag.rst)
      if (type === FrameType.data && length > 0) this.#discard.take(id, length)
      return
    }
    if (type === FrameType.windowUpdate) {
      stream[kFlags](flags)
      if (length > 0 && !stream.destroyed) stream[kWindowUpdate](length)
      return
    }
    if (length > 0 && stream[kRemoteEnded]) throw new ProtocolError(`data on stream ${id} after its FIN`)
    if (!stream[kCanReceive](length)) {
      throw new ProtocolError(`stream ${id} sent ${length} bytes, more than its receive window`)
    }
    if (length === 0) {
      stream[kFlags](flags)
      return
    }
    stream[kFlags](flags & ~Flag.fin)
    this.#rx = stream
    this.#rxFin = (flags & Flag.fin) !== 0
  }

  #onGoAway (code: number): void {
    this.emit('goAwayReceived', code)
    if (code === GoAwayCode.normal) {
      this.#remoteGoAway = true
      this.#log.debug({ streams: this.#streams.size }, 'peer sent GoAway(normal)')
      this.emit('goaway', code)
      return
    }
    const name = goAwayNames[code] ?? 'unknown code'
    this.#terminate(new SessionClosedError(`peer sent GoAway(${code}, ${name})`), null)
  }

  #isLocal (id: number): boolean {
    return (id & 1) === (this.#config.client ? 1 : 0)
  }

  #neverOpened (id: number): boolean {
    return this.#isLocal(id) ? id >= this.#nextId : id > this.#maxInboundId
  }

  // Registers a stream for an inbound SYN, or resets it; see the module header.
  #incoming (id: number): MuxStream | undefined {
    if (id > this.#maxInboundId) this.#maxInboundId = id
    let refusal: [kind: string, reason: string] | null = null
    const direct = this.listenerCount('stream') > 0 && this.#backlog.length === 0
    if (!this.#config.acceptStreams) refusal = ['refused-not-accepting', 'this session accepts no streams']
    else if (this.#localGoAway) refusal = ['refused-closing', 'session is closing']
    else if (this.#streams.size >= this.#config.maxStreams) refusal = ['refused-max-streams', `maxStreams (${this.#config.maxStreams}) reached`]
    else if (!direct && this.#backlog.length >= this.#config.acceptBacklog) refusal = ['refused-backlog', `accept backlog (${this.#config.acceptBacklog}) full`]
    if (refusal !== null) {
      this.#limiter.warn(refusal[0], { stream: id }, `inbound stream reset: ${refusal[1]}`)
      // The peer may send the whole window it assumed before our RST arrives.
      this.#discard.add(SPEC_INITIAL_WINDOW)
      this.#control(FrameType.windowUpdate, Flag.rst, id, 0)
      return undefined
    }
    const stream = new MuxStream(id, this.#host)
    this.#streams.set(id, stream)
    if (direct) {
      stream[kAccept]()
      if (!stream.destroyed) this.emit('stream', stream)
    } else {
      this.#backlog.push(stream)
    }
    return stream
  }

  #drainBacklog (): void {
    while (this.#backlog.length > 0 && this.listenerCount('stream') > 0 && !this.#closed) {
      const stream = this.#backlog.shift() as MuxStream
      if (stream.destroyed) continue
      stream[kAccept]()
      if (!stream.destroyed) this.emit('stream', stream)
    }
  }

  #release (stream: MuxStream): void {
    if (this.#streams.get(stream.id) === stream) {
      this.#streams.delete(stream.id)
      this.#discard.add(stream[kCredit])
    }
    if (this.#backlog.length > 0) {
      const at = this.#backlog.indexOf(stream)
      if (at >= 0) this.#backlog.splice(at, 1)
    }
    this.#waiting.delete(stream)
    if (this.#localGoAway && this.#streams.size === 0 && !this.#closed) this.#terminate(undefined, null)
  }

  // Lets blocked streams send again, in the order they blocked.
  #resumeWaiting (): void {
    const list = [...this.#waiting]
    this.#waiting = new Set()
    let i = 0
    while (i < list.length && !this.#writer.blocked) list[i++][kWritable]()
    if (i < list.length) {
      const again = this.#waiting
      this.#waiting = new Set(list.slice(i))
      for (const stream of again) this.#waiting.add(stream)
      this.#writer.waitWritable()
    }
  }

  #control (type: number, flags: number, id: number, length: number): void {
    if (this.#closed) return
    if (this.#trace) this.#log.trace({ frame: describeFrame(type, flags, id, length) }, 'frame sent')
    this.#writer.control(type, flags, id, length)
  }

  // The peer did not ACK a stream in time: it is presumed dead (hashicorp's StreamOpenTimeout).
  #openTimedOut (stream: MuxStream): void {
    if (this.#closed) return
    const err = new StreamOpenTimeoutError(this.#config.streamOpenTimeout, stream.id)
    stream[kSessionClosed](err)
    this.#terminate(err, null)
  }

  // Ends the session once. `goAway` is the code to send, or null for none.
  #terminate (err: Error | undefined, goAway: number | null): void {
    if (this.#closed) return
    this.#closed = true
    if (goAway !== null) {
      this.#writer.control(FrameType.goAway, 0, 0, goAway)
      this.emit('goAwaySent', goAway)
    }
    this.#decoder.stop()
    this.#pinger.stop(new SessionClosedError('session closed', { cause: err }))
    const streamErr = new SessionClosedError('session closed', { cause: err })
    const streams = [...this.#streams.values()]
    this.#streams.clear()
    this.#backlog = []
    this.#waiting.clear()
    for (const stream of streams) stream[kSessionClosed](streamErr)
    this.#writer.flush()
    this.#writer.close()
    this.#endTransport()
    this.#limiter.flush()

    if (err === undefined) this.#log.debug({}, 'session closed')
    else if (err instanceof ProtocolError) this.#log.error({ err }, `protocol error, session closed: ${err.message}`)
    else this.#log.warn({ err, streams: streams.length }, `session closed: ${err.message}`)
    process.nextTick(() => { this.emit('close', err) })
  }

  #endTransport (): void {
    const t = this.#transport
    if (t.destroyed) return
    const timer = setTimeout(() => { t.destroy() }, TRANSPORT_CLOSE_GRACE_MS)
    timer.unref()
    t.once('close', () => { clearTimeout(timer) })
    if (!t.writableEnded) t.end()
  }
}
