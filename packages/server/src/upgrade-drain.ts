/**
 * Ending upgraded connections (exec, attach, port-forward) at the drain
 * deadline with something the client can show, rather than a reset that
 * kubectl reports as a bare connection error.
 *
 * Until the deadline nothing is touched: an exec that finishes by itself
 * ends with its own status, and a port-forward transfer runs on. Meanwhile
 * the agent → caller direction is followed by a frame tracker (headers
 * only, see upgrade-frames.ts). At the deadline both directions are
 * unpiped; if a frame is half relayed, the rest of it (and only it) is
 * relayed first, bounded by FRAME_FINISH_MS. Then, by protocol
 * (upgrade-farewell.ts):
 * - a Kubernetes channel protocol gets the drain Status on its error
 *   channel, then a Close, so kubectl exits non-zero with the message;
 * - any other WebSocket (port-forward included) gets Close 1001;
 * - SPDY gets the drain Status as a DATA frame on the error stream (the
 *   first stream the caller opened, which the caller → agent direction's
 *   tracker notes), then a FIN;
 * - anything else is left to stop(), which resets it.
 * The caller's socket is then read until it closes (bounded by
 * CLOSE_GRACE_MS): closing a socket with unread input would send a TCP RST,
 * which can discard the farewell before the client reads it. Only then is the
 * agent's stream destroyed, which ends the session on the member cluster.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { type FrameTracker, SpdyFrameTracker, WsFrameTracker } from './upgrade-frames.ts'
import { spdyFarewell, upgradeKind, websocketFarewell, type UpgradeKind } from './upgrade-farewell.ts'

/** How long a half-relayed frame may take to complete at the deadline, in milliseconds; then the connection is reset. */
export const FRAME_FINISH_MS = 2000
/** How long the caller may take to close after the farewell, in milliseconds. */
export const CLOSE_GRACE_MS = 1000
/** Most upgraded connections tracked at once (beyond it, one is reset at the deadline as before). */
const MAX_TRACKED = 10_000
/** Bytes of a half-relayed frame queued to a slow caller before the agent side is paused. */
const FINISH_HIGH_WATER = 1 << 20

/** What {@link UpgradeDrain.endAll} did. */
export interface UpgradeEndResult {
  /** Ended at a frame boundary: with a Status, a Close frame or (SPDY) a FIN. */
  ended: number
  /** Of those, how many got the drain Status on their error channel. */
  withStatus: number
  /** Reset: no known framing, a broken one, or a frame that did not complete in time. */
  reset: number
}

type Outcome = 'status' | 'closed' | 'reset' | 'gone'

interface Tracked {
  readonly kind: UpgradeKind
  readonly tracker: FrameTracker | undefined
  // SPDY only: follows the caller's frames for its first stream id
  readonly callerTracker: SpdyFrameTracker | undefined
  readonly onCallerData: (chunk: unknown) => void
  readonly caller: Duplex
  readonly upstream: Duplex
  readonly onData: (chunk: unknown) => void
}

/** See the module comment. One per server, owned by its WatchDrain. */
export class UpgradeDrain {
  readonly #open = new Set<Tracked>()

  /** Upgraded connections open now. */
  get size (): number { return this.#open.size }

  /** Registers `caller` spliced with the agent's `upstream` after the 101 `res`. */
  track (res: IncomingMessage, caller: Duplex, upstream: Duplex): void {
    if (this.#open.size >= MAX_TRACKED) return
    const kind = upgradeKind(res.headers.upgrade, res.headers['sec-websocket-protocol'], res.headers['x-stream-protocol-version'])
    const tracker = kind.framing === 'websocket' ? new WsFrameTracker() : kind.framing === 'spdy' ? new SpdyFrameTracker() : undefined
    const onData = (chunk: unknown): void => { if (Buffer.isBuffer(chunk)) tracker?.scan(chunk) }
    if (tracker !== undefined) upstream.on('data', onData)
    const callerTracker = kind.framing === 'spdy' && kind.status !== 'none' ? new SpdyFrameTracker() : undefined
    // Only until the first stream id is known: then the tracker costs nothing more.
    const onCallerData = (chunk: unknown): void => {
      if (callerTracker === undefined || !Buffer.isBuffer(chunk)) return
      callerTracker.scan(chunk)
      if (callerTracker.firstSynStream !== undefined) caller.off('data', onCallerData)
    }
    if (callerTracker !== undefined) caller.on('data', onCallerData)
    const entry: Tracked = { kind, tracker, callerTracker, onCallerData, caller, upstream, onData }
    this.#open.add(entry)
    const forget = (): void => {
      this.#open.delete(entry)
      upstream.off('data', onData)
      caller.off('data', onCallerData)
    }
    caller.once('close', forget)
    upstream.once('close', forget)
  }

  /** Ends every tracked connection (see the module comment); resolves when each has closed or been reset. */
  async endAll (): Promise<UpgradeEndResult> {
    const entries = [...this.#open]
    this.#open.clear()
    const outcomes = await Promise.all(entries.map(endOne))
    const count = (o: Outcome): number => outcomes.filter((x) => x === o).length
    return { ended: count('status') + count('closed'), withStatus: count('status'), reset: count('reset') }
  }
}

function endOne (e: Tracked): Promise<Outcome> {
  const { caller, upstream, tracker, kind } = e
  upstream.off('data', e.onData)
  caller.off('data', e.onCallerData)
  if (caller.destroyed || upstream.destroyed) return Promise.resolve('gone')
  // The agent side already finished: the caller is getting its end now.
  if (caller.writableEnded) return Promise.resolve('gone')
  if (tracker === undefined || tracker.broken) return Promise.resolve('reset')
  return new Promise<Outcome>((resolve) => {
    let settled = false
    const finishTimer = tracker.atBoundary ? undefined : setTimeout(() => settle('reset'), FRAME_FINISH_MS)
    finishTimer?.unref()
    const settle = (o: Outcome): void => {
      if (settled) return
      settled = true
      clearTimeout(finishTimer)
      upstream.off('data', rest)
      caller.off('close', lost)
      if (o === 'reset') { upstream.destroy(); caller.destroy() }
      resolve(o)
    }
    const lost = (): void => settle('reset')
    const farewell = (): void => {
      clearTimeout(finishTimer)
      upstream.off('data', rest)
      upstream.pause()
      caller.off('close', lost)
      let withStatus = false
      if (kind.framing === 'websocket') {
        withStatus = kind.status !== 'none'
        caller.write(websocketFarewell(kind))
      } else if (kind.framing === 'spdy' && e.callerTracker?.firstSynStream !== undefined) {
        const data = spdyFarewell(kind.status, e.callerTracker.firstSynStream)
        withStatus = data.length > 0
        if (withStatus) caller.write(data)
      }
      caller.end()
      caller.resume()
      const done = (): void => {
        clearTimeout(grace)
        upstream.destroy()
        caller.destroy()
        settle(withStatus ? 'status' : 'closed')
      }
      const grace = setTimeout(done, CLOSE_GRACE_MS)
      grace.unref()
      caller.once('close', done)
    }
    const rest = (chunk: unknown): void => {
      if (!Buffer.isBuffer(chunk)) return
      const n = tracker.scan(chunk, true)
      if (tracker.broken) { settle('reset'); return }
      if (n > 0 && !caller.write(chunk.subarray(0, n)) && caller.writableLength > FINISH_HIGH_WATER) {
        upstream.pause()
        caller.once('drain', () => upstream.resume())
      }
      if (tracker.atBoundary) farewell()
    }
    upstream.unpipe(caller)
    caller.unpipe(upstream)
    caller.once('close', lost)
    if (finishTimer === undefined) { farewell(); return }
    upstream.on('data', rest)
    upstream.resume()
  })
}
