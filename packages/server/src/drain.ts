/**
 * Ending watches cleanly when a replica drains. A watch never finishes on
 * its own, so it would hold its agent session open until the drain
 * deadline and then be reset, which client-go reports as an error and
 * answers with a relist. Ended cleanly instead (HTTP/1.1: the chunked
 * terminator; h2: END_STREAM) an informer simply re-watches from its last
 * resourceVersion, through the Service, on a replica that holds a session.
 *
 * A watch body is one JSON event per line, so it is cut only after a
 * newline; the relay that copies the body knows its last byte and does the
 * cut (body-relay.ts, `drainEnd`).
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { BodyRelay, WatchRegistry } from './body-relay.ts'
import { UpgradeDrain, type UpgradeEndResult } from './upgrade-drain.ts'

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

/** See the module comment. One per server; the relays register each watch body (body-relay.ts). */
export class WatchDrain implements WatchRegistry {
  readonly #watches = new Set<BodyRelay>()
  readonly #upgrades = new UpgradeDrain()
  #draining = false

  /** Watches being relayed now. */
  get size (): number { return this.#watches.size }

  /** Upgraded connections (exec, attach, port-forward) open now. */
  get upgrades (): number { return this.#upgrades.size }

  /**
   * Registers a watch body being relayed. When the drain ends it, the relay
   * ends the caller's side cleanly at an event boundary and destroys the
   * agent's side (its tunnel stream reset, so the agent ends its watch).
   */
  add (relay: BodyRelay): void {
    if (this.#draining) {
      relay.drainEnd()
      return
    }
    if (this.#watches.size < MAX_TRACKED) this.#watches.add(relay)
  }

  /** Forgets a watch whose body ended or whose caller went away. */
  delete (relay: BodyRelay): void {
    this.#watches.delete(relay)
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
    const watches = [...this.#watches]
    this.#watches.clear()
    for (const relay of watches) relay.drainEnd()
    return watches.length
  }
}
