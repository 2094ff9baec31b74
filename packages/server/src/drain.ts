/**
 * Ending watches cleanly when a replica drains. A watch never finishes on
 * its own, so it would hold its agent session open until the drain
 * deadline and then be reset, which client-go reports as an error and
 * answers with a relist. Ended cleanly instead (HTTP/1.1: the chunked
 * terminator; h2: END_STREAM) an informer simply re-watches from its last
 * resourceVersion, through the Service, on a replica that holds a session.
 *
 * A watch body is one JSON event per line, so it is cut only after a
 * newline: if the last byte relayed was not one, the rest of the current
 * event is relayed first (bounded by EVENT_FINISH_MS, then the stream is
 * reset, as a truncated event must never look complete).
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex, Readable, Writable } from 'node:stream'
import { UpgradeDrain, type UpgradeEndResult } from './upgrade-drain.ts'

/** How long a watch may take to finish the event it is in the middle of when the drain ends it, in milliseconds. */
const EVENT_FINISH_MS = 5000
/** Most watches tracked at once (beyond it, a watch is reset at the deadline like any stream). */
const MAX_TRACKED = 100_000

/** True for a Kubernetes watch request (`?watch=true|1`, or the legacy `/watch/` path). */
export function isWatchRequest (url: string | undefined): boolean {
  if (url === undefined) return false
  const q = url.indexOf('?')
  const path = q < 0 ? url : url.slice(0, q)
  if (/\/watch\//.test(path)) return true
  if (q < 0) return false
  for (const pair of url.slice(q + 1).split('&', 64)) {
    const [k, v] = pair.split('=', 2)
    if (k === 'watch' && (v === 'true' || v === '1')) return true
  }
  return false
}

/** See the module comment. One per server; the relays register each watch response. */
export class WatchDrain {
  readonly #ends = new Set<() => void>()
  readonly #upgrades = new UpgradeDrain()
  #draining = false

  /** Watches being relayed now. */
  get size (): number { return this.#ends.size }

  /** Upgraded connections (exec, attach, port-forward) open now. */
  get upgrades (): number { return this.#upgrades.size }

  /**
   * Registers a watch response `upRes` piped into `sink` (a ServerResponse
   * or an h2 stream). When the drain ends it, `sink` is ended cleanly and
   * `upRes` destroyed (its tunnel stream reset, so the agent ends its watch).
   */
  track (upRes: Readable, sink: Writable): void {
    if (this.#ends.size >= MAX_TRACKED) return
    let lastByte = 10
    const onData = (chunk: Buffer | string): void => {
      if (chunk.length > 0) lastByte = typeof chunk === 'string' ? chunk.charCodeAt(chunk.length - 1) : chunk[chunk.length - 1]!
    }
    upRes.on('data', onData)
    const finish = (): void => {
      upRes.off('data', onData)
      upRes.unpipe(sink)
      if (sink.writableEnded || sink.destroyed) return
      const close = (): void => {
        sink.end()
        sink.once('finish', () => { upRes.destroy() })
      }
      if (lastByte === 10) { close(); return }
      // Mid-event: relay up to the end of this event, then end.
      const timer = setTimeout(() => { upRes.destroy(); sink.destroy() }, EVENT_FINISH_MS)
      timer.unref()
      const rest = (chunk: Buffer | string): void => {
        const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
        const nl = buf.indexOf(10)
        if (nl < 0) { sink.write(buf); return }
        upRes.off('data', rest)
        clearTimeout(timer)
        sink.write(buf.subarray(0, nl + 1))
        close()
      }
      upRes.on('data', rest)
      upRes.resume()
    }
    const end = (): void => { this.#ends.delete(end); finish() }
    this.#ends.add(end)
    const forget = (): void => { this.#ends.delete(end) }
    upRes.once('close', forget)
    sink.once('close', forget)
    if (this.#draining) end()
  }

  /**
   * Registers an upgraded connection (exec, attach, port-forward): `caller`
   * spliced with the agent's `upstream` after the 101 `res`. Until the drain
   * deadline it is left alone; then {@link endUpgrades} ends it (upgrade-drain.ts).
   */
  trackUpgrade (res: IncomingMessage, caller: Duplex, upstream: Duplex): void {
    this.#upgrades.track(res, caller, upstream)
  }

  /** Ends every upgraded connection at a frame boundary, with a Status where its protocol has an error channel. */
  endUpgrades (): Promise<UpgradeEndResult> {
    return this.#upgrades.endAll()
  }

  /** Ends every tracked watch, and any registered from now on; returns how many were ended. */
  endAll (): number {
    this.#draining = true
    const ends = [...this.#ends]
    for (const end of ends) end()
    return ends.length
  }
}
