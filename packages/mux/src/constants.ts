/**
 * Wire constants of the yamux framing (see ../spec.md) and a few internal
 * limits that are not worth a configuration option.
 */

/** The only protocol version on the wire. */
export const PROTOCOL_VERSION = 0

/** Size of a frame header in bytes. */
export const HEADER_SIZE = 12

/** Frame types (the second header byte). */
export const FrameType = {
  /** Stream bytes; `length` is the payload size. */
  data: 0,
  /** Stream window credit; `length` is the delta, no payload. */
  windowUpdate: 1,
  /** Session liveness and RTT; `length` is an opaque value echoed back. */
  ping: 2,
  /** Session termination; `length` is a GoAway code. */
  goAway: 3
} as const
export type FrameType = typeof FrameType[keyof typeof FrameType]

/** Header flags; they combine and may ride on Data or WindowUpdate frames. */
export const Flag = {
  /** Opens a stream, or marks a ping request. */
  syn: 0x1,
  /** Accepts a stream, or marks a ping reply. */
  ack: 0x2,
  /** Half-close: the sender will send no more data on the stream. */
  fin: 0x4,
  /** Abort the stream at once. */
  rst: 0x8
} as const

/**
 * Receive window every stream starts with, in bytes. Both ends assume it
 * without negotiation, so a larger window is announced with a WindowUpdate.
 */
export const SPEC_INITIAL_WINDOW = 256 * 1024

/** Largest value of a 32-bit header field. */
export const MAX_UINT32 = 0xffff_ffff

/** Highest stream ID a session may allocate. */
export const MAX_STREAM_ID = MAX_UINT32

/**
 * Bytes the writer and the transport may hold unflushed, once a control frame
 * (SYN, ACK, FIN, RST, window update, ping reply, GoAway) is queued, before
 * the session gives up on the peer. Data frames stop at the transport's high
 * water mark; control frames are queued regardless, so a peer that sends but
 * never reads could otherwise grow this queue without end. FrameWriter checks
 * it for every frame, whoever queues it.
 */
export const CONTROL_BACKLOG_LIMIT = 8 * 1024 * 1024

/**
 * Warnings of one kind a session logs per LOG_WINDOW_MS before it only counts
 * them (see log-limiter.ts). A peer can provoke a warning per frame; this
 * keeps a flood of SYNs from becoming a flood of log lines.
 */
export const LOG_BURST = 5

/** Length of a log-limiter window, in milliseconds; its end logs the count of what was suppressed. */
export const LOG_WINDOW_MS = 30_000

/**
 * After the session ends the transport, how long to wait for it to close
 * before destroying it, in milliseconds. Gives the final GoAway a chance to
 * reach a peer that is slow to read.
 */
export const TRANSPORT_CLOSE_GRACE_MS = 2_000

/**
 * Payloads up to this many bytes are copied next to their header so that a
 * run of small frames reaches the transport as one buffer.
 */
export const SMALL_PAYLOAD = 512

/** Size of the scratch slabs headers and small payloads are written into, in bytes. */
export const SLAB_SIZE = 16 * 1024
