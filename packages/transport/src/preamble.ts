/**
 * The stream preamble: the first bytes the server writes on every stream it
 * opens, telling the agent what the rest of the stream carries.
 *
 * Wire format (all integers big-endian):
 *
 *     u8  version   = 1
 *     u8  kind      1 = http (plain HTTP/1.1 follows), 2 = tcp (raw bytes follow),
 *                   3 = hframe (hop frames follow, hop-frame.ts)
 *     u16 length    of the JSON body, at most 4096
 *     ... length bytes of UTF-8 JSON: {"id": "<request id for logs>"}
 *
 * Unknown JSON fields are ignored, so the server may add some without a
 * version bump; a new kind or an incompatible body needs a new version.
 */
import type { Duplex } from 'node:stream'
import {
  DEFAULT_PREAMBLE_TIMEOUT,
  MAX_PREAMBLE_BODY,
  PREAMBLE_HEADER_SIZE,
  PREAMBLE_VERSION,
  STREAM_KIND_CODES
} from './constants.ts'
import { PreambleError } from './errors.ts'

/** What a stream carries: plain HTTP/1.1 to re-originate, raw TCP to relay, or hop frames. */
export type StreamKind = keyof typeof STREAM_KIND_CODES

/** The decoded preamble. */
export interface Preamble {
  /** What the rest of the stream carries. */
  kind: StreamKind
  /** Request id chosen by the server, for correlating logs on both ends. */
  id: string
}

/** Longest request id accepted, in characters. */
const MAX_ID_LENGTH = 256

const KIND_BY_CODE = new Map<number, StreamKind>(
  Object.entries(STREAM_KIND_CODES).map(([k, v]) => [v, k as StreamKind])
)

/** Encodes a preamble. Throws {@link PreambleError} on an unknown kind or an id that is too long. */
export function encodePreamble (p: Preamble): Buffer {
  const code = STREAM_KIND_CODES[p.kind]
  if (code === undefined) throw new PreambleError(`unknown stream kind ${JSON.stringify(p.kind)}`)
  if (typeof p.id !== 'string' || p.id.length > MAX_ID_LENGTH) {
    throw new PreambleError(`preamble id must be a string of at most ${MAX_ID_LENGTH} characters`)
  }
  const body = Buffer.from(JSON.stringify({ id: p.id }), 'utf8')
  if (body.length > MAX_PREAMBLE_BODY) throw new PreambleError(`preamble body of ${body.length} bytes exceeds ${MAX_PREAMBLE_BODY}`)
  const out = Buffer.allocUnsafe(PREAMBLE_HEADER_SIZE + body.length)
  out.writeUInt8(PREAMBLE_VERSION, 0)
  out.writeUInt8(code, 1)
  out.writeUInt16BE(body.length, 2)
  body.copy(out, PREAMBLE_HEADER_SIZE)
  return out
}

/**
 * Reads one preamble from `stream`, whatever the chunking, and puts any bytes
 * after it back with `unshift`, so the next consumer (node:http, a pipe) sees
 * the stream exactly from the first byte after the preamble.
 *
 * Rejects with {@link PreambleError} on a malformed or oversized preamble, on
 * end of stream before it is complete, or after `timeoutMs` milliseconds; with
 * the stream's own error if it fails. The stream is left as it is: the caller
 * decides whether to destroy it.
 */
export function readPreamble (stream: Duplex, timeoutMs: number = DEFAULT_PREAMBLE_TIMEOUT): Promise<Preamble> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0)
    let settled = false

    const cleanup = (): void => {
      settled = true
      clearTimeout(timer)
      stream.off('readable', onReadable)
      stream.off('end', onEnd)
      stream.off('error', onError)
      stream.off('close', onClose)
    }
    const fail = (err: Error): void => {
      if (settled) return
      cleanup()
      reject(err)
    }
    const onEnd = (): void => fail(new PreambleError('stream ended before the preamble was complete'))
    const onClose = (): void => fail(new PreambleError('stream closed before the preamble was complete'))
    const onError = (err: Error): void => fail(err)

    const onReadable = (): void => {
      let chunk: Buffer | null
      while (!settled && (chunk = stream.read() as Buffer | null) !== null) {
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
        const result = parse(buffered)
        if (result === undefined) continue
        if (result instanceof Error) {
          fail(result)
          return
        }
        cleanup()
        if (result.rest.length > 0) stream.unshift(result.rest)
        resolve(result.preamble)
      }
    }

    const timer = setTimeout(() => fail(new PreambleError(`no preamble within ${timeoutMs} ms`)), timeoutMs)
    timer.unref()
    stream.on('readable', onReadable)
    stream.on('end', onEnd)
    stream.on('error', onError)
    stream.on('close', onClose)
  })
}

// Returns undefined while more bytes are needed.
function parse (buf: Buffer): { preamble: Preamble, rest: Buffer } | PreambleError | undefined {
  if (buf.length < 1) return undefined
  const version = buf.readUInt8(0)
  if (version !== PREAMBLE_VERSION) return new PreambleError(`unsupported preamble version ${version}`)
  if (buf.length < PREAMBLE_HEADER_SIZE) return undefined
  const kind = KIND_BY_CODE.get(buf.readUInt8(1))
  if (kind === undefined) return new PreambleError(`unknown stream kind code ${buf.readUInt8(1)}`)
  const length = buf.readUInt16BE(2)
  if (length > MAX_PREAMBLE_BODY) return new PreambleError(`preamble body of ${length} bytes exceeds ${MAX_PREAMBLE_BODY}`)
  const end = PREAMBLE_HEADER_SIZE + length
  if (buf.length < end) return undefined
  let body: unknown
  try {
    body = JSON.parse(buf.toString('utf8', PREAMBLE_HEADER_SIZE, end))
  } catch {
    return new PreambleError('preamble body is not valid JSON')
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return new PreambleError('preamble body is not a JSON object')
  const id = (body as { id?: unknown }).id
  if (typeof id !== 'string' || id.length > MAX_ID_LENGTH) return new PreambleError('preamble id is missing or too long')
  return { preamble: { kind, id }, rest: buf.subarray(end) }
}
