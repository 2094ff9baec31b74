// Test helper: a WebSocket client that speaks raw frames, so a test can send
// what no well-behaved library would (Close 1006, a 1-byte close body, a
// ping flood) and see exactly which frames Tower's server end answers with.
import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import { requestUpgrade } from '../src/ws-handshake.ts'
import { applyMask, frameHeader } from '../src/ws-frame.ts'
import { SUBPROTOCOL } from '../src/constants.ts'

/** One client frame: FIN set, masked with a random key, as RFC 6455 §5.3 asks. */
export function clientFrame (opcode: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const mask = randomBytes(4)
  const body = Buffer.from(payload)
  applyMask(body, mask, 0)
  return Buffer.concat([frameHeader(opcode, body.length, mask), body])
}

/** A Close frame payload: the code, then the reason bytes. */
export function closeBody (code: number, reason: Buffer | string = ''): Buffer {
  const out = Buffer.alloc(2)
  out.writeUInt16BE(code)
  return Buffer.concat([out, Buffer.isBuffer(reason) ? reason : Buffer.from(reason)])
}

/** The raw upgraded socket of a client connected to a Tower server at `port`. */
export async function rawClient (port: number): Promise<Socket> {
  const { socket, head } = await requestUpgrade({ url: new URL(`ws://127.0.0.1:${port}/`), protocol: SUBPROTOCOL, timeoutMs: 5000 }).done
  if (head.length > 0) socket.unshift(head)
  return socket
}

/**
 * Resolves with the code of the first Close frame the server sends on
 * `socket` (1005 for an empty body), or rejects if the socket closes first.
 * Parses server frames by hand rather than with FrameParser, which would
 * itself refuse a close code that must never be sent.
 */
export function serverCloseCode (socket: Socket): Promise<number> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk])
      for (;;) {
        if (buf.length < 2) return
        const len7 = buf[1] & 0x7f
        const at = len7 === 126 ? 4 : len7 === 127 ? 10 : 2
        if (buf.length < at) return
        const length = len7 === 126 ? buf.readUInt16BE(2) : len7 === 127 ? Number(buf.readBigUInt64BE(2)) : len7
        if (buf.length < at + length) return
        if ((buf[0] & 0x0f) === 0x8) {
          socket.off('data', onData)
          resolve(length >= 2 ? buf.readUInt16BE(at) : 1005)
          return
        }
        buf = buf.subarray(at + length)
      }
    }
    socket.on('data', onData)
    socket.once('close', () => reject(new Error('socket closed without a close frame')))
  })
}
