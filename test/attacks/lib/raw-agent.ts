/**
 * A hostile agent that speaks the wire protocols by hand: the WebSocket
 * opening handshake as raw bytes over tls.connect, then RFC 6455 frames it
 * builds itself (masked or not, any opcode, any length field), carrying
 * yamux frames it builds itself. Nothing here trusts or fixes what it sends;
 * that is the point.
 */
import tls from 'node:tls'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { AGENT_PATH, HEADER_AGENT_ID, HEADER_CLUSTER, SUBPROTOCOL } from '@tower/transport'
import { encodeHeader, FrameType, HEADER_SIZE } from '@tower/mux'

/** WebSocket opcodes (RFC 6455 §5.2). */
export const Op = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const

/** yamux flags. */
export const MuxFlag = { syn: 1, ack: 2, fin: 4, rst: 8 } as const

/** The answer to a handshake that was not accepted. */
export interface Refusal {
  status: number
  headers: Record<string, string>
  body: string
}

/** Options of {@link rawHandshake}. */
export interface HandshakeOptions {
  port: number
  caPem: string
  /** Request headers; the WebSocket ones are added unless overridden. */
  headers?: Record<string, string>
  path?: string
  /** Limit on the whole handshake, in milliseconds. */
  timeoutMs?: number
}

/**
 * Sends a WebSocket upgrade request over TLS. Resolves with the connected
 * socket and any bytes after the 101, or with the refusal (status, headers,
 * body) once the server closes.
 */
export async function rawHandshake (o: HandshakeOptions): Promise<{ socket: tls.TLSSocket, rest: Buffer } | Refusal> {
  const socket = tls.connect({ host: '127.0.0.1', port: o.port, ca: o.caPem, servername: 'localhost' })
  socket.on('error', () => {})
  await Promise.race([once(socket, 'secureConnect'), once(socket, 'close').then(() => { throw new Error('closed before TLS completed') })])
  const headers: Record<string, string> = {
    host: `127.0.0.1:${o.port}`,
    upgrade: 'websocket',
    connection: 'Upgrade',
    'sec-websocket-version': '13',
    'sec-websocket-key': randomBytes(16).toString('base64'),
    'sec-websocket-protocol': SUBPROTOCOL,
    ...o.headers
  }
  const lines = [`GET ${o.path ?? AGENT_PATH} HTTP/1.1`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', '']
  socket.write(lines.join('\r\n'))
  return readHead(socket, o.timeoutMs ?? 10_000)
}

/** Reads an HTTP response head from `socket`; see {@link rawHandshake}. */
function readHead (socket: tls.TLSSocket, timeoutMs: number): Promise<{ socket: tls.TLSSocket, rest: Buffer } | Refusal> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    let head: { status: number, headers: Record<string, string> } | undefined
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no handshake answer within ${timeoutMs} ms`)) }, timeoutMs)
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk])
      if (head !== undefined) { complete(); return }
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      head = parseHead(buf.subarray(0, end).toString('latin1'))
      buf = buf.subarray(end + 4)
      if (head.status === 101) {
        clearTimeout(timer)
        socket.off('data', onData)
        socket.off('close', onClose)
        resolve({ socket, rest: buf })
      }
      complete()
    }
    // A refusal with a Content-Length is complete once its body is in; no need to wait for the close.
    const complete = (): void => {
      if (head === undefined || head.status === 101) return
      const cl = head.headers['content-length']
      if (cl === undefined || buf.length < Number(cl)) return
      clearTimeout(timer)
      socket.off('close', onClose)
      socket.destroy()
      resolve({ ...head, body: buf.toString('utf8') })
    }
    const onClose = (): void => {
      clearTimeout(timer)
      if (head === undefined) reject(new Error(`connection closed without an answer (${buf.length} bytes)`))
      else resolve({ ...head, body: buf.toString('utf8') })
    }
    socket.on('data', onData)
    socket.once('close', onClose)
  })
}

/** Parses a status line and headers (lower-cased names). */
export function parseHead (text: string): { status: number, headers: Record<string, string> } {
  const [statusLine, ...rest] = text.split('\r\n')
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')
  const headers: Record<string, string> = {}
  for (const line of rest) {
    const at = line.indexOf(':')
    if (at > 0) headers[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim()
  }
  return { status: m === null ? 0 : Number(m[1]), headers }
}

/** Headers an agent of `cluster` sends. */
export function agentHeaders (cluster: string, token: string, agentId = 'rogue'): Record<string, string> {
  return { authorization: `Bearer ${token}`, [HEADER_CLUSTER]: cluster, [HEADER_AGENT_ID]: agentId }
}

/** Options of {@link wsFrame}. */
export interface FrameOptions {
  /** Mask the frame (what a client must do). Default true, with an all-zero key so the payload goes as it is. */
  mask?: boolean
  /** FIN bit; default true. */
  fin?: boolean
  /** RSV1-3 bits to set (0-7). */
  rsv?: number
  /** Declare this payload length instead of the real one (a lie, for length attacks). */
  declaredLength?: bigint
}

/** One WebSocket frame as a client would send it, with the options' distortions. */
export function wsFrame (opcode: number, payload: Buffer, o: FrameOptions = {}): Buffer {
  const len = o.declaredLength ?? BigInt(payload.length)
  const mask = o.mask !== false
  const extra = len < 126n ? 0 : len < 0x10000n ? 2 : 8
  const head = Buffer.alloc(2 + extra + (mask ? 4 : 0))
  head[0] = (o.fin === false ? 0 : 0x80) | ((o.rsv ?? 0) << 4) | opcode
  if (extra === 0) head[1] = Number(len)
  else if (extra === 2) { head[1] = 126; head.writeUInt16BE(Number(len), 2) } else { head[1] = 127; head.writeBigUInt64BE(len, 2) }
  // an all-zero masking key: valid, and the payload needs no XOR
  if (mask) head[1]! |= 0x80
  return Buffer.concat([head, payload])
}

/** A yamux frame header plus payload. */
export function muxFrame (type: number, flags: number, streamId: number, lengthOrPayload: number | Buffer): Buffer {
  if (typeof lengthOrPayload === 'number') return encodeHeader(type, flags, streamId, lengthOrPayload)
  return Buffer.concat([encodeHeader(type, flags, streamId, lengthOrPayload.length), lengthOrPayload])
}

/** A decoded yamux frame header as the rogue saw it. */
export interface SeenMuxFrame { type: number, flags: number, streamId: number, length: number }

/**
 * The server's side of a raw connection, as the rogue agent sees it: it
 * parses the server's (unmasked) WebSocket frames and the yamux frames they
 * carry, counting what arrives, without keeping payloads.
 */
export class RawAgentConnection {
  readonly socket: tls.TLSSocket
  /** yamux frames received (headers only), at most the first 10,000. */
  readonly muxFrames: SeenMuxFrame[] = []
  /** Count of yamux frames received. */
  muxFrameCount = 0
  /** Close code of the server's Close frame, when one came. */
  closeCode: number | undefined
  /** GoAway code the server sent, when it did. */
  goAwayCode: number | undefined
  /** Resolves when the TCP connection closes. */
  readonly closed: Promise<void>
  #ws: Buffer = Buffer.alloc(0)
  #wsPayloadLeft = 0
  #wsOpcode = 0
  #mux: Buffer = Buffer.alloc(0)
  #muxSkip = 0
  #control: Buffer[] = []
  #listeners: Array<(f: SeenMuxFrame) => void> = []
  #pings = 1

  constructor (socket: tls.TLSSocket, rest: Buffer, opts: { read?: boolean } = {}) {
    this.socket = socket
    this.closed = new Promise((resolve) => {
      if (socket.destroyed) resolve()
      else socket.once('close', () => resolve())
    })
    if (rest.length > 0) this.#onData(rest)
    socket.on('data', (c: Buffer) => this.#onData(c))
    if (opts.read === false) socket.pause()
  }

  /** Connects as an agent of `cluster` with `token`; throws if not admitted. */
  static async connect (port: number, caPem: string, cluster: string, token: string, opts: { agentId?: string, read?: boolean } = {}): Promise<RawAgentConnection> {
    const r = await rawHandshake({ port, caPem, headers: agentHeaders(cluster, token, opts.agentId) })
    if (!('socket' in r)) throw new Error(`rogue agent not admitted: ${r.status} ${r.body}`)
    return new RawAgentConnection(r.socket, r.rest, opts)
  }

  /**
   * Writes bytes and waits for the socket to take them: 'ok', 'closed' when
   * the connection is gone, 'stalled' when no drain came within `stallMs`
   * (the server stopped reading: backpressure).
   */
  async write (data: Buffer, stallMs = 30_000): Promise<'ok' | 'closed' | 'stalled'> {
    if (this.socket.destroyed || !this.socket.writable) return 'closed'
    if (this.socket.write(data)) return 'ok'
    return await new Promise((resolve) => {
      const done = (r: 'ok' | 'closed' | 'stalled'): void => {
        clearTimeout(timer)
        this.socket.off('drain', onDrain)
        this.socket.off('close', onClose)
        resolve(r)
      }
      const onDrain = (): void => done('ok')
      const onClose = (): void => done('closed')
      const timer = setTimeout(() => done('stalled'), stallMs)
      this.socket.once('drain', onDrain)
      this.socket.once('close', onClose)
    })
  }

  /** Sends yamux bytes in one masked Binary frame. */
  sendMux (bytes: Buffer, stallMs?: number): Promise<'ok' | 'closed' | 'stalled'> {
    return this.write(wsFrame(Op.binary, bytes), stallMs)
  }

  /**
   * Sends a yamux Ping and waits for its answer: the server has then
   * processed everything sent before it. Resolves false when the connection
   * closed first.
   */
  async sync (timeoutMs = 20_000): Promise<boolean> {
    const opaque = (this.#pings++ * 7919 + 12345) >>> 0
    const answered = this.nextMux((f) => f.type === FrameType.ping && (f.flags & MuxFlag.ack) !== 0 && f.length === opaque, timeoutMs).then(() => true, () => false)
    if (await this.sendMux(muxFrame(FrameType.ping, MuxFlag.syn, 0, opaque)) === 'closed') return false
    return await Promise.race([answered, this.closed.then(() => false)])
  }

  /** Resolves with the first yamux frame (already seen or later) matching `pred`. */
  nextMux (pred: (f: SeenMuxFrame) => boolean, timeoutMs = 10_000): Promise<SeenMuxFrame> {
    const seen = this.muxFrames.find(pred)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.#listeners = this.#listeners.filter((l) => l !== listener); reject(new Error(`no matching yamux frame within ${timeoutMs} ms`)) }, timeoutMs)
      timer.unref()
      const listener = (f: SeenMuxFrame): void => {
        if (!pred(f)) return
        clearTimeout(timer)
        this.#listeners = this.#listeners.filter((l) => l !== listener)
        resolve(f)
      }
      this.#listeners.push(listener)
    })
  }

  /** Closes the TCP connection. */
  destroy (): void {
    this.socket.destroy()
  }

  #onData (chunk: Buffer): void {
    this.#ws = this.#ws.length === 0 ? chunk : Buffer.concat([this.#ws, chunk])
    for (;;) {
      if (this.#wsPayloadLeft > 0) {
        const n = Math.min(this.#wsPayloadLeft, this.#ws.length)
        if (n === 0) return
        const piece = this.#ws.subarray(0, n)
        this.#ws = this.#ws.subarray(n)
        this.#wsPayloadLeft -= n
        if (this.#wsOpcode === Op.binary || this.#wsOpcode === Op.continuation) this.#onMux(piece)
        else this.#control.push(Buffer.from(piece))
        if (this.#wsPayloadLeft === 0) this.#endFrame()
        continue
      }
      if (this.#ws.length < 2) return
      const b1 = this.#ws[1]! & 0x7f
      const extra = b1 < 126 ? 0 : b1 === 126 ? 2 : 8
      const maskLen = (this.#ws[1]! & 0x80) !== 0 ? 4 : 0
      if (this.#ws.length < 2 + extra + maskLen) return
      const opcode = this.#ws[0]! & 0x0f
      const len = extra === 0 ? b1 : extra === 2 ? this.#ws.readUInt16BE(2) : Number(this.#ws.readBigUInt64BE(2))
      this.#ws = this.#ws.subarray(2 + extra + maskLen)
      if (opcode !== Op.continuation) this.#wsOpcode = opcode
      this.#wsPayloadLeft = len
      this.#control = []
      if (len === 0) this.#endFrame()
    }
  }

  #endFrame (): void {
    if (this.#wsOpcode === Op.close) {
      const body = Buffer.concat(this.#control)
      this.closeCode = body.length >= 2 ? body.readUInt16BE(0) : 1005
    }
  }

  #onMux (piece: Buffer): void {
    if (this.#muxSkip > 0) {
      const n = Math.min(this.#muxSkip, piece.length)
      this.#muxSkip -= n
      piece = piece.subarray(n)
    }
    this.#mux = this.#mux.length === 0 ? piece : Buffer.concat([this.#mux, piece])
    while (this.#muxSkip === 0 && this.#mux.length >= HEADER_SIZE) {
      const f: SeenMuxFrame = { type: this.#mux[1]!, flags: this.#mux.readUInt16BE(2), streamId: this.#mux.readUInt32BE(4), length: this.#mux.readUInt32BE(8) }
      this.#mux = this.#mux.subarray(HEADER_SIZE)
      this.muxFrameCount++
      if (this.muxFrames.length < 10_000) this.muxFrames.push(f)
      if (f.type === FrameType.goAway) this.goAwayCode = f.length
      if (f.type === FrameType.data && f.length > 0) {
        const n = Math.min(f.length, this.#mux.length)
        this.#mux = this.#mux.subarray(n)
        this.#muxSkip = f.length - n
      }
      for (const l of [...this.#listeners]) l(f)
    }
    // keep no reference into the socket's chunk beyond what is unparsed
    if (this.#mux.length > 0) this.#mux = Buffer.from(this.#mux)
  }
}
