/**
 * Shared test fixtures: the three transports every session test runs over
 * (an in-memory pair with backpressure, TCP on 127.0.0.1, and ws), session
 * pairs on top of them, a re-chunking wrapper, a log sink and a forced GC.
 */
import { createHash, randomBytes, randomInt } from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import { Duplex } from 'node:stream'
import type { TestContext } from 'node:test'
import v8 from 'node:v8'
import vm from 'node:vm'
import { createWebSocketStream, WebSocket, WebSocketServer } from 'ws'
import { FrameDecoder, Session } from '../src/index.ts'
import type { Logger, SessionOptions } from '../src/index.ts'

/** A way to connect two ends with a byte stream. */
export interface Transport {
  name: string
  /** Two connected ends; closed when the test ends. */
  pair (t: TestContext): Promise<[Duplex, Duplex]>
}

// One end of an in-memory connection. A write completes once the other end
// has room, so backpressure crosses the pair as it would over a socket.
class MemoryEnd extends Duplex {
  peer!: MemoryEnd
  #blockedWrite: (() => void) | null = null

  override _write (chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const peer = this.peer
    if (peer.destroyed) {
      cb(new Error('peer destroyed'))
    } else if (peer.push(chunk)) {
      cb()
    } else {
      peer.#blockedWrite = () => { cb() }
    }
  }

  override _read (): void {
    const resume = this.#blockedWrite
    this.#blockedWrite = null
    resume?.()
  }

  override _final (cb: (err?: Error | null) => void): void {
    if (!this.peer.destroyed) this.peer.push(null)
    cb()
  }

  override _destroy (err: Error | null, cb: (err?: Error | null) => void): void {
    const peer = this.peer
    if (!peer.destroyed) process.nextTick(() => peer.destroy())
    cb(err)
  }
}

/** An in-memory connected pair of Duplexes with backpressure. */
export function memoryPair (): [Duplex, Duplex] {
  const a = new MemoryEnd({ allowHalfOpen: true })
  const b = new MemoryEnd({ allowHalfOpen: true })
  a.peer = b
  b.peer = a
  return [a, b]
}

export const memory: Transport = {
  name: 'memory',
  async pair (t) {
    const [a, b] = memoryPair()
    t.after(() => { a.destroy(); b.destroy() })
    return [a, b]
  }
}

export const tcp: Transport = {
  name: 'tcp',
  async pair (t) {
    const server = net.createServer()
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const { port } = server.address() as net.AddressInfo
    const a = net.connect(port, '127.0.0.1')
    const [[b]] = await Promise.all([once(server, 'connection'), once(a, 'connect')]) as [[net.Socket], unknown]
    t.after(() => { a.destroy(); b.destroy(); server.close() })
    return [a, b]
  }
}

export const ws: Transport = {
  name: 'ws',
  async pair (t) {
    const server = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false })
    await once(server, 'listening')
    const { port } = server.address() as net.AddressInfo
    const client = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false })
    const [[serverSide]] = await Promise.all([once(server, 'connection'), once(client, 'open')]) as [[WebSocket], unknown]
    const a = createWebSocketStream(client)
    const b = createWebSocketStream(serverSide)
    t.after(() => { a.destroy(); b.destroy(); client.terminate(); serverSide.terminate(); server.close() })
    return [a, b]
  }
}

/** The transports every session test runs over. */
export const transports: Transport[] = [memory, tcp, ws]

/** Both ends of a session pair and the raw transports under them. */
export interface SessionPair {
  client: Session
  server: Session
  clientTransport: Duplex
  serverTransport: Duplex
}

/** Options for {@link sessionPair}. */
export interface PairOptions {
  client?: Partial<SessionOptions>
  server?: Partial<SessionOptions>
  /** Re-split every chunk each end reads into pieces of 1..N bytes. */
  rechunk?: number
  /** Delay every write by this many milliseconds, each way. */
  latency?: number
}

/** Connects a client and a server session over `transport`; destroyed when the test ends. */
export async function sessionPair (t: TestContext, transport: Transport, options: PairOptions = {}): Promise<SessionPair> {
  let [a, b] = await transport.pair(t)
  if (options.rechunk !== undefined) {
    a = rechunk(a, options.rechunk)
    b = rechunk(b, options.rechunk)
  }
  if (options.latency !== undefined) {
    a = delayed(a, options.latency)
    b = delayed(b, options.latency)
  }
  const client = new Session(a, { keepAliveInterval: 0, ...options.client, client: true })
  const server = new Session(b, { keepAliveInterval: 0, ...options.server, client: false })
  t.after(() => { client.destroy(); server.destroy() })
  return { client, server, clientTransport: a, serverTransport: b }
}

/**
 * Wraps `inner` so that every chunk read from it is re-split into pieces of
 * 1..max bytes, at random; writes pass through.
 */
export function rechunk (inner: Duplex, max: number): Duplex {
  const outer = new Duplex({
    allowHalfOpen: true,
    write (chunk: Buffer, _enc, cb) {
      if (inner.write(chunk)) cb()
      else inner.once('drain', () => { cb() })
    },
    final (cb) { inner.end(); cb() },
    read () { inner.resume() },
    destroy (err, cb) { inner.destroy(err ?? undefined); cb(err) }
  })
  inner.on('data', (chunk: Buffer) => {
    let ok = true
    for (let off = 0; off < chunk.length;) {
      const n = 1 + randomInt(max)
      ok = outer.push(chunk.subarray(off, off + n))
      off += n
    }
    if (!ok) inner.pause()
  })
  inner.on('end', () => { outer.push(null) })
  inner.on('error', (err) => { outer.destroy(err) })
  return outer
}

/**
 * Wraps `inner` so that every write reaches it `ms` milliseconds later: a
 * link with latency. The wrapper buffers without limit; for short tests only.
 */
export function delayed (inner: Duplex, ms: number): Duplex {
  const outer = new Duplex({
    allowHalfOpen: true,
    write (chunk: Buffer, _enc, cb) {
      setTimeout(() => { if (!inner.destroyed) inner.write(chunk) }, ms)
      cb()
    },
    final (cb) { setTimeout(() => { inner.end(); cb() }, ms) },
    read () {},
    destroy (err, cb) { inner.destroy(err ?? undefined); cb(err) }
  })
  inner.on('data', (chunk: Buffer) => { outer.push(chunk) })
  inner.on('end', () => { outer.push(null) })
  inner.on('error', (err) => { outer.destroy(err) })
  return outer
}

/** A log record captured by {@link captureLogger}. */
export interface LogRecord { level: string, obj: Record<string, unknown>, msg?: string }

/** A Logger that records everything, child bindings included. */
export function captureLogger (): { logger: Logger, records: LogRecord[] } {
  const records: LogRecord[] = []
  const make = (bindings: Record<string, unknown>): Logger => {
    const at = (level: string) => (obj: object, msg?: string): void => {
      records.push({ level, obj: { ...bindings, ...obj }, msg })
    }
    return {
      trace: at('trace'),
      debug: at('debug'),
      info: at('info'),
      warn: at('warn'),
      error: at('error'),
      child: (more) => make({ ...bindings, ...more })
    }
  }
  return { logger: make({}), records }
}

/** Runs a full garbage collection, exposing `gc` if node was started without --expose-gc. */
export function gc (): void {
  const g = (globalThis as { gc?: () => void }).gc
  if (typeof g === 'function') {
    g()
    return
  }
  v8.setFlagsFromString('--expose-gc')
  ;(vm.runInNewContext('gc') as () => void)()
}

/** sha256 of a list of buffers, as hex. */
export function sha256 (chunks: Buffer[]): string {
  const h = createHash('sha256')
  for (const c of chunks) h.update(c)
  return h.digest('hex')
}

/** Reads `stream` to its end and returns the sha256 and byte count of what came. */
export async function drain (stream: Duplex): Promise<{ hash: string, bytes: number }> {
  // Not `for await`: the async iterator destroys the Duplex when the readable
  // side ends, which would reset a stream whose writable side is still busy.
  const h = createHash('sha256')
  let bytes = 0
  stream.on('data', (chunk: Buffer) => {
    h.update(chunk)
    bytes += chunk.length
  })
  await once(stream, 'end')
  return { hash: h.digest('hex'), bytes }
}

/**
 * Writes `size` random bytes to `stream` in chunks of random size up to
 * `maxChunk`, honouring backpressure, then ends it; returns their sha256.
 */
export async function sendRandom (stream: Duplex, size: number, maxChunk = 16 * 1024): Promise<string> {
  const h = createHash('sha256')
  let left = size
  while (left > 0) {
    const chunk = randomBytes(Math.min(left, 1 + randomInt(maxChunk)))
    h.update(chunk)
    left -= chunk.length
    if (!stream.write(chunk)) await once(stream, 'drain')
  }
  stream.end()
  return h.digest('hex')
}

/**
 * Resolves once `condition()` holds, checking after every turn of the event
 * loop; rejects after `ms` milliseconds. For states that have no event.
 */
export async function until (condition: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setImmediate(resolve))
  }
}

/** A frame header seen by a raw peer. */
export interface Frame { type: number, flags: number, streamId: number, length: number }

/** Parses bytes a raw peer received into frame headers. */
export function framesOf (bytes: Buffer): Frame[] {
  const frames: Frame[] = []
  const decoder = new FrameDecoder({
    onHeader (type, flags, streamId, length) { frames.push({ type, flags, streamId, length }) },
    onPayload () {},
    onPayloadEnd () {}
  }, 1 << 30)
  decoder.push(bytes)
  return frames
}

/** A session and the raw peer the test drives. */
export interface RawSetup { session: Session, transport: Duplex, raw: Duplex, received: () => Buffer, records: LogRecord[] }

/** A client session (odd IDs) whose peer is a raw byte stream driven by the test. */
export async function rawPeer (t: TestContext, transport: Transport, options: Partial<SessionOptions> = {}): Promise<RawSetup> {
  const [a, raw] = await transport.pair(t)
  const { logger, records } = captureLogger()
  const session = new Session(a, { keepAliveInterval: 0, ...options, client: true, logger })
  t.after(() => { session.destroy() })
  const chunks: Buffer[] = []
  raw.on('data', (c: Buffer) => chunks.push(c))
  raw.on('error', () => {})
  return { session, transport: a, raw, records, received: () => Buffer.concat(chunks) }
}

/** Destroys every end still open and waits for each to close. */
export async function closeAll (ends: Duplex[]): Promise<void> {
  await Promise.all(ends.map(async (end) => {
    if (end.closed) return
    const closed = once(end, 'close')
    end.destroy()
    await closed
  }))
}
