/**
 * The status of an answer written raw to a socket (an upgrade's relayed 101,
 * or a refusal): read from the first bytes written, `HTTP/1.x NNN`. The audit
 * log and the metrics both need it; this is the one place that wraps the
 * socket's write and end for it.
 */
import type { Duplex } from 'node:stream'

/** Calls `onStatus` with the code of the first `HTTP/1.x NNN` written to `socket` (by write() or end()). */
export function sniffStatus (socket: Duplex, onStatus: (code: number) => void): void {
  const write = socket.write
  const end = socket.end
  const sniff = (chunk: unknown): void => {
    socket.write = write
    socket.end = end
    const text = typeof chunk === 'string' ? chunk.slice(0, 16) : Buffer.isBuffer(chunk) ? chunk.subarray(0, 16).toString('latin1') : ''
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(text)
    if (m !== null) onStatus(Number(m[1]))
  }
  socket.write = function (this: Duplex, ...args: unknown[]): boolean {
    sniff(args[0])
    return (write as (...a: unknown[]) => boolean).apply(this, args)
  } as typeof socket.write
  socket.end = function (this: Duplex, ...args: unknown[]): Duplex {
    sniff(args[0])
    return (end as (...a: unknown[]) => Duplex).apply(this, args)
  } as typeof socket.end
}
