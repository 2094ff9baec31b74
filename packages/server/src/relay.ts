/**
 * Joins two byte streams both ways, keeping half-close: when one side ends
 * its writes, the other side's writable is ended and the reverse direction
 * keeps flowing. An error or an abrupt close on either side destroys the
 * other, so a reset travels end to end and nothing is silently truncated.
 */
import type { Duplex } from 'node:stream'

/** Pipes `a` ↔ `b`. `onDone` runs once, when both are closed. */
export function splice (a: Duplex, b: Duplex, onDone?: (err?: Error) => void): void {
  let firstErr: Error | undefined
  let closed = 0
  const onClose = (self: Duplex, other: Duplex) => (): void => {
    // Closed without finishing both directions: an abort, pass it on.
    if (!(self.readableEnded && self.writableFinished)) other.destroy(firstErr)
    if (++closed === 2) onDone?.(firstErr)
  }
  const onError = (err: Error): void => { firstErr ??= err }
  a.on('error', onError)
  b.on('error', onError)
  a.once('close', onClose(a, b))
  b.once('close', onClose(b, a))
  a.pipe(b)
  b.pipe(a)
}
