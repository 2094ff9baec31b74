/**
 * Hop frames: the compact binary form of one HTTP exchange between the server
 * and the agent (stream kind `hframe`, packages/mux/spec.md section 7.3). It
 * replaces HTTP/1.1 text on the hop, so neither end runs an HTTP parser or
 * keeps its per-request objects.
 *
 * Each message is `[u8 type][u32 BE payload length][payload]`. Heads carry a
 * flags byte (bit 0: a body follows), then u16-length-prefixed latin1
 * strings; DATA carries body bytes; END closes one direction's body.
 *
 * The decoder is a push parser with no I/O. It never buffers more than one
 * head (at most `maxHeadBytes`): a DATA frame's payload is handed on in
 * pieces as it arrives, as subarrays of the input, so a frame split over
 * several chunks may surface as several `data` messages. It also checks the
 * grammar of one direction, `(HEAD (DATA* if the body flag) END)*`, with all
 * heads of one type: what the stream's role is (request or response) is
 * fixed by its first head.
 */
import { InvalidArgumentError } from '@tower/mux'
import { HOP_MAX_DATA, HOP_MAX_HEAD_BYTES, HOP_MAX_PAIRS } from './constants.ts'
import { HopFrameError } from './errors.ts'

/** A request head: what the server sends first in each exchange. */
export interface HopRequestHead {
  /** The HTTP method, 1-32 token characters. */
  method: string
  /** The request target: starts with `/`, bytes 0x21-0x7e only. */
  path: string
  /** Flat `[name, value, ...]`; names lower-case tokens, values without CR, LF or NUL. */
  headers: string[]
  /** Whether DATA frames follow before the END. */
  body: boolean
}

/** A response head: what the agent answers first in each exchange. */
export interface HopResponseHead {
  /** The HTTP status, an integer 200-599. */
  status: number
  /** Flat `[name, value, ...]`, as in {@link HopRequestHead.headers}. */
  headers: string[]
  /** Whether DATA frames follow before the END. */
  body: boolean
}

/** One decoded message. `data` chunks are views of the decoder's input, not copies. */
export type HopMessage =
  | { type: 'request-head', head: HopRequestHead }
  | { type: 'response-head', head: HopResponseHead }
  | { type: 'data', chunk: Buffer }
  | { type: 'end' }

/** Bounds on heads, for the encoder and the decoder. */
export interface HopLimits {
  /** Largest head payload, in bytes (16 to 16 MiB). */
  maxHeadBytes: number
  /** Largest number of header name/value pairs in one head. */
  maxPairs: number
}

/** Frame type codes. 0 and 5+ are reserved (an error). */
const T_REQUEST_HEAD = 1
const T_DATA = 2
const T_END = 3
const T_RESPONSE_HEAD = 4

/** Size of a frame header: u8 type and u32 length, in bytes. */
const HEADER_SIZE = 5
const FLAG_BODY = 1
const MAX_METHOD = 32
const MAX_NAME = 256
const MAX_LIMIT_HEAD_BYTES = 16 * 1024 * 1024
// flags, then a 1-byte method and the 1-byte path "/", each with its u16 length
const MIN_REQUEST_HEAD = 7
// flags and status
const MIN_RESPONSE_HEAD = 3

const DEFAULT_LIMITS: HopLimits = Object.freeze({ maxHeadBytes: HOP_MAX_HEAD_BYTES, maxPairs: HOP_MAX_PAIRS })

// RFC 9110 tchar; header names additionally lower-case.
const METHOD_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}$/
const NAME_RE = /^[!#$%&'*+\-.^_`|~0-9a-z]{1,256}$/
const PATH_RE = /^\/[\x21-\x7e]*$/
const VALUE_RE = /^[\t\x20-\x7e\x80-\xff]*$/

function checkLimits (limits: HopLimits | undefined): HopLimits {
  if (limits === undefined) return DEFAULT_LIMITS
  const { maxHeadBytes, maxPairs } = limits
  if (!Number.isInteger(maxHeadBytes) || maxHeadBytes < 16 || maxHeadBytes > MAX_LIMIT_HEAD_BYTES) {
    throw new InvalidArgumentError(`maxHeadBytes must be an integer from 16 to ${MAX_LIMIT_HEAD_BYTES}, got ${String(maxHeadBytes)}`)
  }
  if (!Number.isInteger(maxPairs) || maxPairs < 0 || maxPairs > 65536) {
    throw new InvalidArgumentError(`maxPairs must be an integer from 0 to 65536, got ${String(maxPairs)}`)
  }
  return limits
}

/** The one method rule, for the encoder and the decoder. */
function checkMethod (m: unknown): asserts m is string {
  if (typeof m !== 'string' || m.length > MAX_METHOD || !METHOD_RE.test(m)) throw new HopFrameError('method is not 1-32 token characters')
}

/** The one path rule. */
function checkPath (p: unknown, limits: HopLimits): asserts p is string {
  if (typeof p !== 'string' || p.length > limits.maxHeadBytes || !PATH_RE.test(p)) {
    throw new HopFrameError('path must start with / and hold only bytes 0x21-0x7e')
  }
}

/** The one header list rule: even count, pair limit, names and values. */
function checkHeaders (h: unknown, limits: HopLimits): asserts h is string[] {
  if (!Array.isArray(h)) throw new HopFrameError('headers must be an array')
  if (h.length % 2 !== 0) throw new HopFrameError('header list has an odd count')
  if (h.length / 2 > limits.maxPairs) throw new HopFrameError(`more than ${limits.maxPairs} header pairs`)
  for (let i = 0; i < h.length; i += 2) {
    const name: unknown = h[i]
    const value: unknown = h[i + 1]
    if (typeof name !== 'string' || name.length > MAX_NAME || !NAME_RE.test(name)) {
      throw new HopFrameError('header name is not 1-256 lower-case token characters')
    }
    if (typeof value !== 'string' || value.length > limits.maxHeadBytes || !VALUE_RE.test(value)) {
      throw new HopFrameError(`value of header ${name} holds CR, LF, NUL or a character above 0xff`)
    }
  }
}

/** The one status rule. */
function checkStatus (s: unknown): asserts s is number {
  if (typeof s !== 'number' || !Number.isInteger(s) || s < 200 || s > 599) throw new HopFrameError('status must be an integer from 200 to 599')
}

// Writes u16-prefixed latin1 strings from `at`; every string was validated
// to hold only characters up to 0xff, so its length is its byte length.
function writeStrings (out: Buffer, at: number, strings: readonly string[]): number {
  for (const s of strings) {
    out.writeUInt16BE(s.length, at)
    out.write(s, at + 2, 'latin1')
    at += 2 + s.length
  }
  return at
}

function stringsSize (strings: readonly string[]): number {
  let n = 0
  for (const s of strings) {
    if (s.length > 0xffff) throw new HopFrameError('a string is longer than 65535 bytes')
    n += 2 + s.length
  }
  return n
}

function frame (type: number, payloadLength: number, limits: HopLimits): Buffer {
  if (payloadLength > limits.maxHeadBytes) throw new HopFrameError(`head of ${payloadLength} bytes exceeds ${limits.maxHeadBytes}`)
  const out = Buffer.allocUnsafe(HEADER_SIZE + payloadLength)
  out[0] = type
  out.writeUInt32BE(payloadLength, 1)
  return out
}

/**
 * Encodes a REQUEST_HEAD frame. Throws {@link HopFrameError} on an invalid
 * field or a head larger than `limits.maxHeadBytes`.
 */
export function encodeRequestHead (h: HopRequestHead, limits?: HopLimits): Buffer {
  const l = checkLimits(limits)
  checkMethod(h.method)
  checkPath(h.path, l)
  checkHeaders(h.headers, l)
  const size = 1 + stringsSize([h.method, h.path]) + stringsSize(h.headers)
  const out = frame(T_REQUEST_HEAD, size, l)
  out[HEADER_SIZE] = h.body === true ? FLAG_BODY : 0
  writeStrings(out, writeStrings(out, HEADER_SIZE + 1, [h.method, h.path]), h.headers)
  return out
}

/**
 * Encodes a RESPONSE_HEAD frame. Throws {@link HopFrameError} on an invalid
 * field or a head larger than `limits.maxHeadBytes`.
 */
export function encodeResponseHead (h: HopResponseHead, limits?: HopLimits): Buffer {
  const l = checkLimits(limits)
  checkStatus(h.status)
  checkHeaders(h.headers, l)
  const out = frame(T_RESPONSE_HEAD, 3 + stringsSize(h.headers), l)
  out[HEADER_SIZE] = h.body === true ? FLAG_BODY : 0
  out.writeUInt16BE(h.status, HEADER_SIZE + 1)
  writeStrings(out, HEADER_SIZE + 3, h.headers)
  return out
}

/**
 * The 5-byte header of a DATA frame of `length` bytes (1 to HOP_MAX_DATA);
 * the caller writes the header, then the chunk. Throws {@link HopFrameError}
 * on a length out of range.
 */
export function encodeDataHeader (length: number): Buffer {
  if (!Number.isInteger(length) || length < 1 || length > HOP_MAX_DATA) {
    throw new HopFrameError(`DATA length must be an integer from 1 to ${HOP_MAX_DATA}, got ${String(length)}`)
  }
  const out = Buffer.allocUnsafe(HEADER_SIZE)
  out[0] = T_DATA
  out.writeUInt32BE(length, 1)
  return out
}

const END_FRAME = Buffer.from([T_END, 0, 0, 0, 0])

/** An END frame: this direction's body is complete. A fresh buffer, so callers may keep it. */
export function encodeEnd (): Buffer {
  return Buffer.from(END_FRAME)
}

// Reads the u16-prefixed strings of a head payload from `at` to its end.
function readStrings (p: Buffer, at: number, into: string[]): void {
  while (at < p.length) {
    if (p.length - at < 2) throw new HopFrameError('truncated string length')
    const n = p.readUInt16BE(at)
    at += 2
    if (p.length - at < n) throw new HopFrameError('string runs past the head')
    into.push(p.toString('latin1', at, at + n))
    at += n
  }
}

function readFlags (p: Buffer): boolean {
  const flags = p[0]
  if ((flags & ~FLAG_BODY) !== 0) throw new HopFrameError(`reserved flag bits set (0x${flags.toString(16)})`)
  return flags === FLAG_BODY
}

function decodeRequestHead (p: Buffer, limits: HopLimits): HopRequestHead {
  if (p.length < 1) throw new HopFrameError('empty REQUEST_HEAD')
  const body = readFlags(p)
  const strings: string[] = []
  readStrings(p, 1, strings)
  if (strings.length < 2) throw new HopFrameError('REQUEST_HEAD without method and path')
  const method = strings[0]
  const path = strings[1]
  checkMethod(method)
  checkPath(path, limits)
  const headers = strings.slice(2)
  checkHeaders(headers, limits)
  return { method, path, headers, body }
}

function decodeResponseHead (p: Buffer, limits: HopLimits): HopResponseHead {
  if (p.length < 3) throw new HopFrameError('RESPONSE_HEAD shorter than flags and status')
  const body = readFlags(p)
  const status = p.readUInt16BE(1)
  checkStatus(status)
  const headers: string[] = []
  readStrings(p, 3, headers)
  checkHeaders(headers, limits)
  return { status, headers, body }
}

// Where a direction is in its exchange grammar.
const IDLE = 0 // between exchanges: a head comes next
const BODY = 1 // after a head with the body flag: DATA or END
const AWAIT_END = 2 // after a head without a body: END only

/** Push decoder of one direction of a hop stream. */
export class HopDecoder {
  readonly #limits: HopLimits
  // A frame header split across chunks, kept as numbers: a Buffer would
  // cost every idle stream an ArrayBuffer and its backing store.
  #headerHave = 0
  #headerType = 0
  #headerLength = 0
  // type and bytes left of the frame whose payload is being read; 0 = none
  #type = 0
  #left = 0
  // a head payload that spans chunks, collected here (at most maxHeadBytes)
  #head: Buffer | null = null
  #headHave = 0
  #phase = IDLE
  // the head type this direction carries, fixed by its first head; 0 = none yet
  #headType = 0
  #failed = false

  /** `limits` bound the heads it accepts (default HOP_MAX_HEAD_BYTES, HOP_MAX_PAIRS). */
  constructor (limits?: HopLimits) {
    this.#limits = checkLimits(limits)
  }

  /**
   * Feeds bytes; returns the complete messages in order. Throws
   * {@link HopFrameError} (code `TOWER_ERR_HOP_FRAME`) on any violation;
   * after a throw the decoder is unusable.
   */
  push (chunk: Buffer): HopMessage[] {
    if (this.#failed) throw new HopFrameError('decoder used after an error')
    try {
      return this.#push(chunk)
    } catch (err) {
      this.#failed = true
      this.#head = null
      if (err instanceof HopFrameError) throw err
      throw new HopFrameError(`malformed input (${(err as Error).message})`)
    }
  }

  #push (chunk: Buffer): HopMessage[] {
    const out: HopMessage[] = []
    let at = 0
    while (at < chunk.length) {
      if (this.#type === 0) {
        // frame header: the type byte is judged at once, the length as soon as it is complete
        if (this.#headerHave === 0) {
          const type = chunk[at]!
          this.#checkType(type)
          if (chunk.length - at >= HEADER_SIZE) {
            const length = chunk.readUInt32BE(at + 1)
            at += HEADER_SIZE
            this.#startFrame(type, length, out)
            continue
          }
          this.#headerType = type
          this.#headerLength = 0
          this.#headerHave = 1
          at++
        }
        while (this.#headerHave < HEADER_SIZE && at < chunk.length) {
          this.#headerLength = this.#headerLength * 256 + chunk[at++]!
          this.#headerHave++
        }
        if (this.#headerHave < HEADER_SIZE) break
        this.#headerHave = 0
        this.#startFrame(this.#headerType, this.#headerLength, out)
        continue
      }
      const take = Math.min(this.#left, chunk.length - at)
      if (this.#type === T_DATA) {
        out.push({ type: 'data', chunk: chunk.subarray(at, at + take) })
        at += take
        this.#left -= take
        if (this.#left === 0) this.#type = 0
        continue
      }
      // a head: whole in this chunk is parsed in place; otherwise collected
      if (this.#head === null && take === this.#left) {
        out.push(this.#finishHead(chunk.subarray(at, at + take)))
        at += take
        continue
      }
      this.#head ??= Buffer.allocUnsafe(this.#left)
      chunk.copy(this.#head, this.#headHave, at, at + take)
      this.#headHave += take
      this.#left -= take
      at += take
      if (this.#left === 0) {
        const payload = this.#head
        this.#head = null
        this.#headHave = 0
        out.push(this.#finishHead(payload))
      }
    }
    return out
  }

  #checkType (type: number): void {
    if (type === T_REQUEST_HEAD || type === T_RESPONSE_HEAD) {
      if (this.#phase !== IDLE) throw new HopFrameError('a head before the previous END')
      if (this.#headType !== 0 && this.#headType !== type) throw new HopFrameError('request and response heads mixed in one direction')
    } else if (type === T_DATA) {
      if (this.#phase !== BODY) throw new HopFrameError(this.#phase === IDLE ? 'DATA outside an exchange' : 'DATA after a head without a body')
    } else if (type === T_END) {
      if (this.#phase === IDLE) throw new HopFrameError('END outside an exchange')
    } else {
      throw new HopFrameError(`unknown frame type ${type}`)
    }
  }

  #startFrame (type: number, length: number, out: HopMessage[]): void {
    if (type === T_END) {
      if (length !== 0) throw new HopFrameError(`END with a ${length}-byte payload`)
      this.#phase = IDLE
      out.push({ type: 'end' })
      return
    }
    if (type === T_DATA) {
      if (length === 0 || length > HOP_MAX_DATA) throw new HopFrameError(`DATA of ${length} bytes (1 to ${HOP_MAX_DATA})`)
    } else if (length > this.#limits.maxHeadBytes) {
      throw new HopFrameError(`head of ${length} bytes exceeds ${this.#limits.maxHeadBytes}`)
    } else if (length < (type === T_REQUEST_HEAD ? MIN_REQUEST_HEAD : MIN_RESPONSE_HEAD)) {
      throw new HopFrameError(`head of ${length} bytes is shorter than its fixed fields`)
    }
    this.#type = type
    this.#left = length
  }

  #finishHead (payload: Buffer): HopMessage {
    const type = this.#type
    this.#type = 0
    this.#left = 0
    let msg: HopMessage
    let body: boolean
    if (type === T_REQUEST_HEAD) {
      const head = decodeRequestHead(payload, this.#limits)
      body = head.body
      msg = { type: 'request-head', head }
    } else {
      const head = decodeResponseHead(payload, this.#limits)
      body = head.body
      msg = { type: 'response-head', head }
    }
    this.#headType = type
    this.#phase = body ? BODY : AWAIT_END
    return msg
  }
}
