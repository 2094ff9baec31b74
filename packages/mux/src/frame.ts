/**
 * The 12-byte frame header: version u8, type u8, flags u16, stream ID u32,
 * length u32, all big-endian. Encoding writes into a caller's buffer so the
 * writer can pack many headers into one slab.
 */
import { FrameType, HEADER_SIZE, PROTOCOL_VERSION } from './constants.ts'

/** A decoded frame header. */
export interface FrameHeader {
  /** Protocol version; always 0 on a valid frame. */
  version: number
  /** One of {@link FrameType}. */
  type: number
  /** A combination of `Flag` bits. */
  flags: number
  /** Stream the frame addresses; 0 for the session (Ping, GoAway). */
  streamId: number
  /** Payload size (Data), window delta (WindowUpdate), opaque value (Ping) or GoAway code. */
  length: number
}

/** Writes a header at `offset` of `buf`; returns the offset after it. */
export function writeHeader (buf: Buffer, offset: number, type: number, flags: number, streamId: number, length: number): number {
  buf[offset] = PROTOCOL_VERSION
  buf[offset + 1] = type
  buf.writeUInt16BE(flags, offset + 2)
  buf.writeUInt32BE(streamId, offset + 4)
  buf.writeUInt32BE(length, offset + 8)
  return offset + HEADER_SIZE
}

/** Encodes one header into a new 12-byte buffer. */
export function encodeHeader (type: number, flags: number, streamId: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_SIZE)
  writeHeader(buf, 0, type, flags, streamId, length)
  return buf
}

/** Reads the header at `offset` of `buf`; the caller ensures 12 bytes are there. */
export function readHeader (buf: Uint8Array, offset = 0): FrameHeader {
  const view = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  return {
    version: view[offset],
    type: view[offset + 1],
    flags: view.readUInt16BE(offset + 2),
    streamId: view.readUInt32BE(offset + 4),
    length: view.readUInt32BE(offset + 8)
  }
}

const typeNames = ['Data', 'WindowUpdate', 'Ping', 'GoAway']

/** A short description of a header for trace logs, such as `Data[SYN|FIN] #3 len=42`. */
export function describeFrame (type: number, flags: number, streamId: number, length: number): string {
  const names: string[] = []
  if (flags & 1) names.push('SYN')
  if (flags & 2) names.push('ACK')
  if (flags & 4) names.push('FIN')
  if (flags & 8) names.push('RST')
  const typeName = typeNames[type] ?? `type${type}`
  return `${typeName}${names.length > 0 ? `[${names.join('|')}]` : ''} #${streamId} len=${length}`
}

/** Whether `type` is one of the four known frame types. */
export function isKnownType (type: number): type is FrameType {
  return type >= FrameType.data && type <= FrameType.goAway
}
