/**
 * Connections per source that have not authenticated yet, and the cap on
 * them. Every listening port already caps the connections it holds at once
 * (maxConnections); without a per-source cap, one address holding that many
 * half-open TLS handshakes (each for up to the handshake timeout, then again)
 * keeps every other caller or agent out of the port. With it, a source gets
 * at most `limit` slots in the unauthenticated phase; authenticated
 * connections do not count, so a busy client behind one address is not
 * refused for the connections it already uses.
 *
 * Sources are IPv4 addresses (IPv4-mapped IPv6 unwrapped) and IPv6 /64
 * prefixes: one IPv6 host is commonly given a whole /64, so counting single
 * IPv6 addresses would cap nothing.
 */
import { isIPv4, isIPv6 } from 'node:net'

/** The source a remote address counts against; `unknown` when the address is missing or not an IP. */
export function sourceKey (remote: string | undefined): string {
  if (remote === undefined) return 'unknown'
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remote)
  if (mapped !== null) return mapped[1]!
  if (isIPv4(remote)) return remote
  if (!isIPv6(remote)) return 'unknown'
  // A zone (fe80::1%eth0) names an interface, not an address.
  const address = remote.split('%')[0]!.toLowerCase()
  const [head = '', tail] = address.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === undefined || tail === '' ? [] : tail.split(':')
  // An embedded IPv4 tail (::1.2.3.4) takes two groups; a /64 needs only the first four.
  const width = right.length + (right.at(-1)?.includes('.') === true ? 1 : 0)
  const groups = tail === undefined ? left : [...left, ...new Array<string>(Math.max(0, 8 - left.length - width)).fill('0'), ...right]
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`
}

/** Counts unauthenticated connections per source; see the module header. */
export class SourceCap {
  // Only sources with at least one slot taken: an entry goes when its count reaches 0,
  // so the map is bounded by the open connections (the port's maxConnections).
  readonly #counts = new Map<string, number>()
  readonly #limit: number

  /** At most `limit` slots per source at once (an integer >= 1). */
  constructor (limit: number) {
    this.#limit = limit
  }

  /** The per-source limit. */
  get limit (): number { return this.#limit }

  /** Sources holding at least one slot now. */
  get sources (): number { return this.#counts.size }

  /** Slots `source` holds now. */
  count (source: string): number { return this.#counts.get(source) ?? 0 }

  /** Takes a slot for `source`; false (nothing taken) when it holds `limit` already. */
  take (source: string): boolean {
    const n = this.#counts.get(source) ?? 0
    if (n >= this.#limit) return false
    this.#counts.set(source, n + 1)
    return true
  }

  /** Gives back one slot of `source`. */
  release (source: string): void {
    const n = this.#counts.get(source)
    if (n === undefined) return
    if (n <= 1) this.#counts.delete(source)
    else this.#counts.set(source, n - 1)
  }
}
