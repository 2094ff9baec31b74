/**
 * One HTTP(S) GET that tells apart the ways a response can end: complete (the body's own end: chunked
 * terminator or Content-Length reached), an error the client saw (reset, abort, connection refused), or
 * a stall (no byte for `stallMs`). The body is hashed or kept as it arrives.
 */
import { createHash } from 'node:crypto'
import { request as httpRequest, type Agent as HttpAgent, type IncomingMessage } from 'node:http'
import { request as httpsRequest, type Agent as HttpsAgent, type RequestOptions } from 'node:https'

/** How a GET ended. */
export interface FetchResult {
  /** HTTP status; 0 when no response head arrived. */
  status: number
  /** True when the body reached its own end. */
  complete: boolean
  /** Set when the client saw an error (before or during the body). */
  error?: string
  /** True when it was given up after `stallMs` without progress. */
  stalled: boolean
  bytes: number
  /** sha256 hex of the body (when `hash`). */
  sha256?: string
  /** The body (when `keep`). */
  body?: Buffer
  /** Whether the body had begun when it ended (an interrupted transfer rather than a refused one). */
  bodyStarted: boolean
}

/** Options of {@link fetchOnce}. */
export interface FetchOptions {
  /** TLS options (CA, client cert) for https; absent = plain http. */
  tls?: RequestOptions
  agent?: HttpAgent | HttpsAgent | false
  /** Give up after this many ms without a byte (ms). */
  stallMs: number
  hash?: boolean
  keep?: boolean
}

/** GET `url` once (no retries). Never throws. */
export function fetchOnce (url: URL, opts: FetchOptions): Promise<FetchResult> {
  return new Promise((resolve) => {
    const r: FetchResult = { status: 0, complete: false, stalled: false, bytes: 0, bodyStarted: false }
    const hash = opts.hash === true ? createHash('sha256') : undefined
    const chunks: Buffer[] = []
    let done = false
    let timer: NodeJS.Timeout | undefined
    const finish = (): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      if (hash !== undefined && r.complete) r.sha256 = hash.digest('hex')
      if (opts.keep === true) r.body = Buffer.concat(chunks)
      resolve(r)
    }
    const arm = (): void => {
      clearTimeout(timer)
      timer = setTimeout(() => { r.stalled = true; req.destroy(new Error(`no progress for ${opts.stallMs} ms`)) }, opts.stallMs)
    }
    const onResponse = (res: IncomingMessage): void => {
      r.status = res.statusCode ?? 0
      arm()
      res.on('data', (c: Buffer) => {
        r.bodyStarted = true
        r.bytes += c.length
        hash?.update(c)
        if (opts.keep === true) chunks.push(c)
        arm()
      })
      res.on('end', () => { r.complete = res.complete; if (!res.complete) r.error ??= 'ended incomplete'; finish() })
      res.on('aborted', () => { r.error ??= 'aborted' })
      res.on('error', (err) => { r.error ??= err.message; finish() })
      res.on('close', () => { if (!r.complete) r.error ??= 'closed before the end'; finish() })
    }
    const common = { method: 'GET', agent: opts.agent ?? false }
    const req = opts.tls === undefined
      ? httpRequest(url, common, onResponse)
      : httpsRequest(url, { ...opts.tls, ...common }, onResponse)
    req.on('error', (err) => { r.error ??= err.message; finish() })
    arm()
    req.end()
  })
}
