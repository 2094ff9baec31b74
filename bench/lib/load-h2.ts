/**
 * The load client's HTTP/2 jobs (client-go's pattern: many requests and
 * watches multiplexed on a handful of TLS connections), run by bench/load.ts
 * in the load client process. Same payloads as the HTTP/1.1 jobs.
 */
import type http2 from 'node:http2'
import { performance } from 'node:perf_hooks'
import { H2Pool } from './h2-pool.ts'
import { percentile } from './stats.ts'
import type { Target } from './target.ts'

/** A pool for the target (https only). */
export function h2PoolFor (t: Target, minSessions: number): H2Pool {
  if (t.protocol !== 'https' || t.connect !== undefined) throw new Error(`${t.name}: h2 jobs need a plain TLS target`)
  return new H2Pool({ origin: `https://${t.host}:${t.port}`, ca: t.ca, cert: t.cert, key: t.key, servername: t.servername, minSessions })
}

function headersFor (t: Target, method: string, path: string): http2.OutgoingHttpHeaders {
  return { ':method': method, ':path': path, ':authority': `${t.host}:${t.port}` }
}

async function getJson (t: Target, pool: H2Pool): Promise<void> {
  const s = await pool.request(headersFor(t, 'GET', '/json'))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => s.close(), 10_000)
    let status = 0
    s.once('response', (h) => { status = Number(h[':status']) })
    s.on('data', () => {})
    s.once('end', () => {
      clearTimeout(timer)
      if (status === 200) resolve()
      else reject(new Error(`${t.name}: h2 GET /json → ${status}`))
    })
    s.once('error', (err) => { clearTimeout(timer); reject(err) })
    s.once('close', () => { clearTimeout(timer); if (status === 0) reject(new Error(`${t.name}: h2 GET /json closed without a response (rst ${s.rstCode})`)) })
  })
}

/** Keep-alive small requests over `sessions` h2 sessions: rps and latency percentiles (ms). */
export async function rpsH2 (j: { target: Target, concurrency: number, durationMs: number, warmupMs: number, sessions: number }): Promise<object> {
  const pool = h2PoolFor(j.target, j.sessions)
  await pool.warm()
  const lat: number[] = []
  let errors = 0
  let firstError: string | undefined
  const t0 = performance.now()
  const measureFrom = t0 + j.warmupMs
  const end = measureFrom + j.durationMs
  const worker = async (): Promise<void> => {
    for (;;) {
      const s = performance.now()
      if (s >= end) return
      try {
        await getJson(j.target, pool)
        const e = performance.now()
        if (s >= measureFrom && e <= end) lat.push(e - s)
      } catch (err) {
        errors++
        firstError ??= (err as Error).message
        if (errors > 1000) return
      }
    }
  }
  try {
    await Promise.all(Array.from({ length: j.concurrency }, worker))
  } finally {
    pool.close()
  }
  const secs = (Math.min(end, performance.now()) - measureFrom) / 1000
  return {
    requests: lat.length,
    errors,
    firstError,
    seconds: secs,
    rps: lat.length / secs,
    p50: percentile(lat, 50),
    p90: percentile(lat, 90),
    p99: percentile(lat, 99),
    max: percentile(lat, 100),
    sessions: j.sessions
  }
}

const idle: { pool?: H2Pool, streams: http2.ClientHttp2Stream[] } = { streams: [] }

/**
 * Opens `n` GET /watch streams on as few sessions as the server's stream
 * limit allows, `openConcurrency` at a time; each counts once its first event
 * arrives. Gives up when none opened for `stallMs`.
 */
export async function idleOpenH2 (j: { target: Target, n: number, openConcurrency: number, timeoutMs: number, stallMs: number }): Promise<object> {
  const pool = h2PoolFor(j.target, 1)
  idle.pool = pool
  let opened = 0
  let failed = 0
  let next = 0
  let firstError: string | undefined
  let lastProgress = Date.now()
  const t0 = performance.now()
  let lastOpenAt = t0
  const deadline = Date.now() + j.timeoutMs
  const openOne = async (): Promise<void> => {
    try {
      const s = await pool.request(headersFor(j.target, 'GET', '/watch'))
      idle.streams.push(s)
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('idle h2 stream open timed out')), Math.max(1, Math.min(deadline - Date.now(), j.stallMs)))
        s.once('data', () => { clearTimeout(timer); s.pause(); resolve() })
        s.once('error', (err) => { clearTimeout(timer); reject(err) })
        s.once('close', () => { clearTimeout(timer); reject(new Error(`stream closed before its first event (rst ${s.rstCode})`)) })
      })
      opened++
      lastProgress = Date.now()
      lastOpenAt = performance.now()
    } catch (err) {
      failed++
      firstError ??= (err as Error).message
    }
  }
  const worker = async (): Promise<void> => {
    while (next < j.n && Date.now() < deadline && Date.now() - lastProgress < j.stallMs) { next++; await openOne() }
  }
  await Promise.all(Array.from({ length: Math.min(j.openConcurrency, j.n) }, worker))
  return { requested: j.n, opened, failed, firstError, ms: lastOpenAt - t0, sessions: pool.sessions }
}

/** Closes the idle h2 streams and their sessions. */
export function idleCloseH2 (): number {
  const n = idle.streams.length
  for (const s of idle.streams) s.close()
  idle.streams = []
  idle.pool?.close()
  idle.pool = undefined
  return n
}
