/**
 * What a draining replica says last on an upgraded connection, by protocol.
 *
 * Kubernetes' WebSocket channel protocols put a 1-byte channel number in
 * front of every message (base64 variants: one ASCII digit, then base64,
 * in a text frame); channel 3 carries the error. Which encoding the error
 * takes follows the apiserver/kubelet side of the protocol: `v4.` and `v5.`
 * send a metav1.Status as JSON, the pre-v4 `channel.k8s.io` and
 * `base64.channel.k8s.io` send the bare message text. The client reads the
 * error channel to its end, and client-go ends its channels cleanly only on
 * a normal closure: after Close 1001 kubectl v1.32 reports "error reading
 * from error stream: … close 1001" and drops the Status (seen in
 * test/e2e/drain-exec.test.ts; v5's stream-close message, channel 255, is
 * "Unknown stream id 255" to it). So, like the apiserver at the end of an
 * exec, the channel protocols get Close 1000 after the Status, its reason
 * saying the server drains. The port-forward protocols have no error
 * channel for the whole session (each port has its own), so they get only
 * Close 1001 ("going away"). Frames go from the server side,
 * so they are unmasked (RFC 6455 §5.1).
 *
 * SPDY (kubectl's fallback, `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`)
 * carries each channel as a stream the client opens; client-go's exec and
 * attach open the error stream first. Its protocol version is the 101's
 * `X-Stream-Protocol-Version` (v4: Status JSON; v1-v3: text). The Status
 * goes as one DATA frame with FLAG_FIN on that stream, then the connection
 * ends: a DATA frame has no compressed header block, so it can be written
 * without the session's zlib state. Without a version (port-forward), or
 * before the client opened a stream, only the connection end is sent, and
 * kubectl cannot tell it from a normal end (it exits 0).
 */
import { frameHeader, Opcode, statusBody, WS_CLOSE_GOING_AWAY } from '@tower/transport'

/** The message every session cut at the drain deadline gets. */
export const DRAIN_MESSAGE = 'tower: this server replica is draining (SIGTERM); the session was closed at the drain deadline, reconnect to continue'
/** The reason of the Close frame (RFC 6455 limits the whole control payload to 125 bytes). */
export const DRAIN_CLOSE_REASON = 'tower: server draining'

/** How a drain ends one upgraded connection. */
export type UpgradeKind =
  | WebSocketKind
  | { framing: 'spdy', status: 'json' | 'text' | 'none' }
  | { framing: 'unknown' }

/** A WebSocket session's protocol, as far as its farewell goes. */
export interface WebSocketKind {
  framing: 'websocket'
  /** How its error channel carries a status: metav1.Status JSON, bare text, or no such channel. */
  status: 'json' | 'text' | 'none'
  /** Text frames of `<channel digit><base64>` instead of binary frames of `<channel byte><bytes>`. */
  base64: boolean
}

const ERROR_CHANNEL = 3
const CLOSE_NORMAL = 1000

/**
 * Classifies a 101 answer by its `Upgrade`, `Sec-WebSocket-Protocol` and (SPDY)
 * `X-Stream-Protocol-Version` headers; hostile: anything unknown gets no status.
 */
export function upgradeKind (upgrade: unknown, protocol: unknown, streamProtocol?: unknown): UpgradeKind {
  const up = typeof upgrade === 'string' ? upgrade.trim().toLowerCase() : ''
  if (up === 'spdy/3.1') {
    const v = typeof streamProtocol === 'string' ? streamProtocol.trim() : ''
    if (v === 'v4.channel.k8s.io') return { framing: 'spdy', status: 'json' }
    if (v === 'v3.channel.k8s.io' || v === 'v2.channel.k8s.io' || v === 'channel.k8s.io') return { framing: 'spdy', status: 'text' }
    return { framing: 'spdy', status: 'none' }
  }
  if (up !== 'websocket') return { framing: 'unknown' }
  const p = typeof protocol === 'string' ? protocol.trim() : ''
  switch (p) {
    case 'v5.channel.k8s.io':
      return { framing: 'websocket', status: 'json', base64: false }
    case 'v4.channel.k8s.io':
      return { framing: 'websocket', status: 'json', base64: false }
    case 'v4.base64.channel.k8s.io':
      return { framing: 'websocket', status: 'json', base64: true }
    case 'channel.k8s.io':
      return { framing: 'websocket', status: 'text', base64: false }
    case 'base64.channel.k8s.io':
      return { framing: 'websocket', status: 'text', base64: true }
    default:
      // Port-forward (v4.portforward.k8s.io, portforward.k8s.io) and any other subprotocol.
      return { framing: 'websocket', status: 'none', base64: false }
  }
}

/** The metav1.Status sent on the error channel (503 ServiceUnavailable, the drain message). */
export function drainStatus (): string {
  return statusBody(503, DRAIN_MESSAGE)
}

/** The bytes a WebSocket session gets at the drain deadline: the error-channel message, if its protocol has one, then a Close (see the module comment). */
export function websocketFarewell (kind: WebSocketKind): Buffer {
  const parts: Buffer[] = []
  if (kind.status !== 'none') {
    const body = Buffer.from(kind.status === 'json' ? drainStatus() : DRAIN_MESSAGE)
    const payload = kind.base64
      ? Buffer.from(String(ERROR_CHANNEL) + body.toString('base64'))
      : Buffer.concat([Buffer.from([ERROR_CHANNEL]), body])
    parts.push(frameHeader(kind.base64 ? Opcode.text : Opcode.binary, payload.length), payload)
  }
  const reason = Buffer.from(DRAIN_CLOSE_REASON)
  const close = Buffer.alloc(2 + reason.length)
  close.writeUInt16BE(kind.status === 'none' ? WS_CLOSE_GOING_AWAY : CLOSE_NORMAL, 0)
  reason.copy(close, 2)
  parts.push(frameHeader(Opcode.close, close.length), close)
  return Buffer.concat(parts)
}

/** The DATA frame (SPDY/3 §2.2.2) with FLAG_FIN that carries the drain status on stream `streamId`, or nothing without a status. */
export function spdyFarewell (status: 'json' | 'text' | 'none', streamId: number): Buffer {
  if (status === 'none') return Buffer.alloc(0)
  const body = Buffer.from(status === 'json' ? drainStatus() : DRAIN_MESSAGE)
  const head = Buffer.alloc(8)
  head.writeUInt32BE(streamId & 0x7fff_ffff, 0)
  head.writeUInt32BE(body.length, 4)
  head[4] = 0x01
  return Buffer.concat([head, body])
}
