/**
 * Joins two byte streams both ways, with half-close: when one side ends
 * (FIN), the other side's writable is ended and the opposite direction keeps
 * flowing until it ends too. A side that errors or closes without finishing
 * both directions aborts the other, so a failure is never mistaken for a
 * clean end (a mux stream destroyed without error sends RST).
 */
import type { Duplex } from 'node:stream'

/** Pipes `a` ↔ `b`; `onDone` runs once, when both have closed, with the first error if any. */
export function splice (a: Duplex, b: Duplex, onDone?: (err?: Error) => void): void {
  let failed: Error | undefined
  let aborted = false
  let open = 2
  const abort = (err?: Error): void => {
    if (err !== undefined && failed === undefined) failed = err
    if (aborted) return
    aborted = true
    a.destroy()
    b.destroy()
  }
  const onClose = (s: Duplex) => (): void => {
    if (!(s.readableEnded && s.writableFinished)) abort()
    if (--open === 0) onDone?.(failed)
  }
  a.on('error', abort)
  b.on('error', abort)
  a.once('close', onClose(a))
  b.once('close', onClose(b))
  a.pipe(b)
  b.pipe(a)
}
