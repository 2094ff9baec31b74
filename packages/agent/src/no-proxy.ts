/**
 * NO_PROXY matching, with Go net/http's semantics (what kubectl and most of
 * the Kubernetes ecosystem follow), since there is no standard:
 * - `*` matches everything;
 * - `example.com` matches example.com and any subdomain of it;
 * - `.example.com` (or `*.example.com`) matches subdomains only;
 * - `host:port` matches only that port;
 * - an IP literal matches that address, a CIDR (`10.0.0.0/8`) any address in it.
 * Entries are separated by commas or whitespace; matching is case-insensitive.
 */
import { BlockList, isIP } from 'node:net'

interface HostRule {
  /** Lower-case name without a leading dot. */
  name: string
  /** Match subdomains only (entry started with "."). */
  subdomainsOnly: boolean
  /** Only this port, or any port when undefined. */
  port: number | undefined
}

/** A parsed NO_PROXY list. */
export class NoProxy {
  readonly #all: boolean
  readonly #hosts: HostRule[] = []
  readonly #cidrs = new BlockList()

  /** Parses a NO_PROXY value; unparseable entries are ignored, as other tools do. */
  constructor (value: string) {
    let all = false
    for (let entry of value.split(/[\s,]+/)) {
      entry = entry.trim().toLowerCase()
      if (entry === '') continue
      if (entry === '*') {
        all = true
        continue
      }
      const slash = entry.indexOf('/')
      if (slash > 0) {
        const ip = entry.slice(0, slash)
        const prefix = Number(entry.slice(slash + 1))
        const family = isIP(ip)
        if (family !== 0 && Number.isInteger(prefix) && prefix >= 0 && prefix <= (family === 4 ? 32 : 128)) {
          this.#cidrs.addSubnet(ip, prefix, family === 4 ? 'ipv4' : 'ipv6')
        }
        continue
      }
      const { host, port } = splitHostPort(entry)
      if (host === '') continue
      if (host.startsWith('*.')) this.#hosts.push({ name: host.slice(2), subdomainsOnly: true, port })
      else if (host.startsWith('.')) this.#hosts.push({ name: host.slice(1), subdomainsOnly: true, port })
      else this.#hosts.push({ name: host, subdomainsOnly: false, port })
    }
    this.#all = all
  }

  /** True when a connection to `url` should bypass the proxy. */
  bypass (url: URL): boolean {
    if (this.#all) return true
    const host = url.hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1')
    const port = url.port !== '' ? Number(url.port) : defaultPort(url.protocol)
    const family = isIP(host)
    if (family !== 0 && this.#cidrs.check(host, family === 4 ? 'ipv4' : 'ipv6')) return true
    for (const rule of this.#hosts) {
      if (rule.port !== undefined && rule.port !== port) continue
      if (host === rule.name && !rule.subdomainsOnly) return true
      if (family === 0 && host.endsWith('.' + rule.name)) return true
    }
    return false
  }
}

function splitHostPort (entry: string): { host: string, port: number | undefined } {
  // [v6]:port, [v6], bare v6 (several colons), host:port, host
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry)
  if (bracketed !== null) return { host: bracketed[1], port: bracketed[2] !== undefined ? Number(bracketed[2]) : undefined }
  if (isIP(entry) === 6) return { host: entry, port: undefined }
  const m = /^([^:]+):(\d+)$/.exec(entry)
  if (m !== null) return { host: m[1], port: Number(m[2]) }
  return { host: entry, port: undefined }
}

function defaultPort (protocol: string): number {
  return protocol === 'wss:' || protocol === 'https:' ? 443 : 80
}
