/**
 * Reads a member cluster's Kubernetes version through its tunnel: when an
 * agent of a proxy-mode cluster connects, `GET /version` goes over a mux
 * stream exactly as a caller's request would, but as an internal request
 * with no caller identity. The agent re-originates it with its own
 * credentials (every authenticated identity may read /version), so nothing
 * of a caller is involved. Passthrough clusters are never probed: their TLS
 * runs end to end and the tunnel cannot speak HTTP to them.
 *
 * The answer is hostile input: the body is capped, gitVersion must be a
 * printable string of at most 64 characters, and the whole exchange has a
 * deadline. At most one probe per cluster is in flight; a failed one is
 * logged at debug and tried again at the cluster's next agent connect.
 */
import http from 'node:http'
import type { Logger } from '@tower/mux'
import type { TunnelPool } from './tunnels.ts'

/** Default deadline of one probe, in milliseconds. */
export const DEFAULT_VERSION_PROBE_TIMEOUT_MS = 5000

/** Largest /version body read, in bytes; the real one is about 300. */
export const MAX_VERSION_BODY_BYTES = 16 * 1024

/** Longest gitVersion accepted, in characters. */
export const MAX_GIT_VERSION_LENGTH = 64

/** Options of {@link VersionProbe}. */
export interface VersionProbeOptions {
  tunnels: TunnelPool
  /** Deadline of one probe, in milliseconds (default 5,000). */
  timeoutMs?: number
  /** Called with each version read. */
  onVersion: (cluster: string, gitVersion: string) => void
  logger: Logger
}

/** The gitVersion of a /version body, or undefined when it is not a valid one. */
export function parseGitVersion (body: string): string | undefined {
  let data: unknown
  try { data = JSON.parse(body) } catch { return undefined }
  if (typeof data !== 'object' || data === null || !Object.hasOwn(data, 'gitVersion')) return undefined
  const v: unknown = (data as { gitVersion: unknown }).gitVersion
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_GIT_VERSION_LENGTH) return undefined
  return /^[\x21-\x7e]+$/.test(v) ? v : undefined
}

/** Probes clusters' versions; see the module comment. */
export class VersionProbe {
  readonly #opts: VersionProbeOptions
  readonly #log: Logger
  readonly #timeoutMs: number
  readonly #inFlight = new Map<string, http.ClientRequest>()

  constructor (opts: VersionProbeOptions) {
    this.#opts = opts
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_VERSION_PROBE_TIMEOUT_MS
    this.#log = opts.logger.child({ component: 'version-probe' })
  }

  /** True while a probe of `cluster` is under way. */
  inFlight (cluster: string): boolean {
    return this.#inFlight.has(cluster)
  }

  /** Starts a probe of `cluster` unless one is under way. Never throws. */
  probe (cluster: string): void {
    if (this.#inFlight.has(cluster)) return
    let stream
    try {
      stream = this.#opts.tunnels.open(cluster, 'http')
    } catch (err) {
      this.#log.debug({ cluster, reason: (err as Error).message }, 'version probe not sent; retried at the next agent connect')
      return
    }
    const req = http.request({
      createConnection: () => stream,
      method: 'GET',
      path: '/version',
      // node's HTTP server on the agent side wants a Host header; the agent
      // talks to its configured upstream whatever it says.
      headers: { host: 'kubernetes', accept: 'application/json', 'user-agent': 'tower-server/version-probe' },
      timeout: this.#timeoutMs
    })
    this.#inFlight.set(cluster, req)
    let done = false
    const finish = (version: string | undefined, reason?: string): void => {
      if (done) return
      done = true
      clearTimeout(deadline)
      this.#inFlight.delete(cluster)
      req.destroy()
      if (version !== undefined) {
        this.#log.debug({ cluster, kubernetesVersion: version }, 'read the member\'s Kubernetes version')
        this.#opts.onVersion(cluster, version)
      } else {
        this.#log.debug({ cluster, reason }, 'version probe failed; retried at the next agent connect')
      }
    }
    // The socket timeout only sees idle time; a deadline bounds the whole exchange.
    const deadline = setTimeout(() => finish(undefined, `no answer within ${this.#timeoutMs} ms`), this.#timeoutMs)
    deadline.unref()
    req.on('timeout', () => finish(undefined, `no answer within ${this.#timeoutMs} ms`))
    req.on('error', (err) => finish(undefined, err.message))
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        res.resume()
        finish(undefined, `status ${String(res.statusCode)}`)
        return
      }
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size > MAX_VERSION_BODY_BYTES) finish(undefined, `body larger than ${MAX_VERSION_BODY_BYTES} bytes`)
        else chunks.push(chunk)
      })
      res.on('end', () => {
        const version = parseGitVersion(Buffer.concat(chunks).toString('utf8'))
        finish(version, version === undefined ? 'no valid gitVersion in the answer' : undefined)
      })
      res.on('error', (err) => finish(undefined, err.message))
    })
    req.end()
  }

  /** Aborts every probe under way. */
  close (): void {
    for (const req of this.#inFlight.values()) req.destroy()
    this.#inFlight.clear()
  }
}
