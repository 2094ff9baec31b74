/**
 * The load client. It runs in its own child process (`fork('bench/load.ts')`)
 * so that it never shares an event loop with the upstream or a tunnel end;
 * run.ts sends it jobs over IPC and gets the figures back. The same code and
 * the same payloads serve every path; only the {@link Target} changes.
 *
 * Jobs:
 *   bulk       one stream, N bytes down (GET /bytes) or up (POST /upload): MB/s
 *   rps        C workers doing GET /json for D ms (after a warm-up), keep-alive
 *              or a new connection per request: rps, p50, p99 (ms)
 *   hol        S concurrent bulk downloads, optionally while one extra
 *              download's reader is stalled: aggregate MB/s
 *   idle-open  N concurrent GET /watch long polls, each counted open when its
 *              first event arrives; held until idle-close
 *   idle-close destroys the idle streams
 * rps and idle-open take `proto: 'h2'` for an HTTP/2 client (lib/load-h2.ts):
 * requests multiplexed on a few TLS connections, as client-go does.
 * MB is 10^6 bytes throughout.
 */
import type http from 'node:http'
import { performance } from 'node:perf_hooks'
import { makeAgent, requestFn, requestOptions, type Target } from './lib/target.ts'
import { percentile } from './lib/stats.ts'
import { idleCloseH2, idleOpenH2, rpsH2 } from './lib/load-h2.ts'

const UPLOAD_CHUNK = Buffer.alloc(256 * 1024, 0x62)
/** idle-open gives up when no stream has opened for this long, in milliseconds. */
const IDLE_STALL_MS = 15_000

/** A job for the load client. */
export type Job =
  | { kind: 'bulk', target: Target, direction: 'down' | 'up', bytes: number, timeoutMs: number }
  | { kind: 'rps', target: Target, concurrency: number, durationMs: number, warmupMs: number, newConnection: boolean, maxRequests?: number,
    /** 'h2': keep-alive requests over `h2Sessions` HTTP/2 sessions (newConnection must be false). */
    proto?: 'h1' | 'h2', h2Sessions?: number }
  | { kind: 'hol', target: Target, streams: number, bytesPerStream: number, stall: boolean, stallSettleMs: number, timeoutMs: number }
  | { kind: 'idle-open', target: Target, n: number, openConcurrency: number, timeoutMs: number, proto?: 'h1' | 'h2' }
  | { kind: 'idle-close' }

/** GET /bytes?n= on `agent`; resolves with the byte count and elapsed ms. */
export function download (t: Target, agent: http.Agent, n: number, timeoutMs: number): Promise<{ bytes: number, ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const req = requestFn(t)(requestOptions(t, agent, 'GET', `/bytes?n=${n}`), (res) => {
      if (res.statusCode !== 200) { res.resume(); reject(new Error(`${t.name}: GET /bytes → ${res.statusCode}`)); return }
      let bytes = 0
      res.on('data', (d: Buffer) => { bytes += d.length })
      res.once('end', () => {
        clearTimeout(timer)
        if (bytes !== n) reject(new Error(`${t.name}: got ${bytes} of ${n} bytes`))
        else resolve({ bytes, ms: performance.now() - t0 })
      })
      res.once('error', reject)
    })
    const timer = setTimeout(() => req.destroy(new Error(`${t.name}: download timed out after ${timeoutMs} ms`)), timeoutMs)
    req.once('error', (err) => { clearTimeout(timer); reject(err) })
    req.end()
  })
}

/** POST /upload of n bytes from one reusable buffer, with backpressure. */
export function upload (t: Target, agent: http.Agent, n: number, timeoutMs: number): Promise<{ bytes: number, ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const req = requestFn(t)(requestOptions(t, agent, 'POST', '/upload',
      { 'content-type': 'application/octet-stream', 'content-length': String(n) }), (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.once('end', () => {
        clearTimeout(timer)
        const got = res.statusCode === 200 ? (JSON.parse(body) as { bytes: number }).bytes : -1
        if (got !== n) reject(new Error(`${t.name}: upstream got ${got} of ${n} bytes (status ${res.statusCode})`))
        else resolve({ bytes: n, ms: performance.now() - t0 })
      })
    })
    const timer = setTimeout(() => req.destroy(new Error(`${t.name}: upload timed out after ${timeoutMs} ms`)), timeoutMs)
    req.once('error', (err) => { clearTimeout(timer); reject(err) })
    let left = n
    const pump = (): void => {
      while (left > 0) {
        const len = Math.min(left, UPLOAD_CHUNK.length)
        left -= len
        if (!req.write(len === UPLOAD_CHUNK.length ? UPLOAD_CHUNK : UPLOAD_CHUNK.subarray(0, len))) { req.once('drain', pump); return }
      }
      req.end()
    }
    pump()
  })
}

function getJson (t: Target, agent: http.Agent, newConnection: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = requestFn(t)(requestOptions(t, agent, 'GET', '/json', newConnection ? { connection: 'close' } : {}), (res) => {
      if (res.statusCode !== 200) { res.resume(); reject(new Error(`${t.name}: GET /json → ${res.statusCode}`)); return }
      res.on('data', () => {})
      res.once('end', () => { clearTimeout(timer); resolve() })
      res.once('error', reject)
    })
    const timer = setTimeout(() => req.destroy(new Error(`${t.name}: GET /json timed out`)), 10_000)
    req.once('error', (err) => { clearTimeout(timer); reject(err) })
    req.end()
  })
}

async function bulk (j: Extract<Job, { kind: 'bulk' }>): Promise<object> {
  const agent = makeAgent(j.target, { keepAlive: false, maxSockets: 1 })
  try {
    const r = j.direction === 'down'
      ? await download(j.target, agent, j.bytes, j.timeoutMs)
      : await upload(j.target, agent, j.bytes, j.timeoutMs)
    return { bytes: r.bytes, ms: r.ms, mbps: r.bytes / 1e6 / (r.ms / 1000) }
  } finally { agent.destroy() }
}

async function rps (j: Extract<Job, { kind: 'rps' }>): Promise<object> {
  const agent = makeAgent(j.target, { keepAlive: !j.newConnection, maxSockets: j.concurrency })
  const lat: number[] = []
  let errors = 0
  let firstError: string | undefined
  const maxRequests = j.maxRequests ?? 5_000_000
  const t0 = performance.now()
  const measureFrom = t0 + j.warmupMs
  const end = measureFrom + j.durationMs
  let measuredEnd = end
  const worker = async (): Promise<void> => {
    for (let i = 0; i < maxRequests && lat.length < maxRequests; i++) {
      const s = performance.now()
      if (s >= end) return
      try {
        await getJson(j.target, agent, j.newConnection)
        const e = performance.now()
        if (s >= measureFrom && e <= end) lat.push(e - s)
      } catch (err) {
        errors++
        firstError ??= (err as Error).message
        if (errors > 1000) return
      }
    }
  }
  await Promise.all(Array.from({ length: j.concurrency }, worker))
  measuredEnd = Math.min(end, performance.now())
  agent.destroy()
  const secs = (measuredEnd - measureFrom) / 1000
  return {
    requests: lat.length,
    errors,
    firstError,
    seconds: secs,
    rps: lat.length / secs,
    p50: percentile(lat, 50),
    p90: percentile(lat, 90),
    p99: percentile(lat, 99),
    max: percentile(lat, 100)
  }
}

/**
 * Like {@link download}, but never rejects: at `deadline` (performance.now()
 * time) or on an error it resolves with the bytes received so far, so a path
 * whose streams are blocked yields a low figure instead of no figure.
 */
function downloadUntil (t: Target, agent: http.Agent, n: number, deadline: number): Promise<{ bytes: number, ms: number, error?: string }> {
  return new Promise((resolve) => {
    const t0 = performance.now()
    let bytes = 0
    let done = false
    const finish = (error?: string): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      resolve({ bytes, ms: performance.now() - t0, ...(error !== undefined ? { error } : {}) })
    }
    const req = requestFn(t)(requestOptions(t, agent, 'GET', `/bytes?n=${n}`), (res) => {
      res.on('data', (d: Buffer) => { bytes += d.length })
      res.once('end', () => finish(bytes === n ? undefined : `short: ${bytes} of ${n}`))
      res.once('error', (err) => finish(err.message))
    })
    const timer = setTimeout(() => { finish('deadline'); req.destroy() }, Math.max(1, deadline - performance.now()))
    req.once('error', (err) => finish(err.message))
    req.end()
  })
}

async function hol (j: Extract<Job, { kind: 'hol' }>): Promise<object> {
  const agent = makeAgent(j.target, { keepAlive: false, maxSockets: j.streams + 1 })
  let stalledReq: http.ClientRequest | undefined
  let stalledBytes = 0
  try {
    if (j.stall) {
      // One extra download whose reader stops after its first chunk: node
      // stops reading the socket once the response's buffer is full, so the
      // TCP window closes and the tunnel must hold that stream alone.
      await new Promise<void>((resolve, reject) => {
        stalledReq = requestFn(j.target)(requestOptions(j.target, agent, 'GET', `/bytes?n=${4 * 1024 ** 3}`), (res) => {
          res.once('data', (d: Buffer) => { stalledBytes += d.length; res.pause(); resolve() })
        })
        stalledReq.once('error', reject)
        stalledReq.end()
      })
    }
    // The same pause before every run, stalled or not, so both start from the same state (GC, caches).
    await new Promise((resolve) => setTimeout(resolve, j.stallSettleMs))
    const t0 = performance.now()
    const deadline = t0 + j.timeoutMs
    const each = await Promise.all(Array.from({ length: j.streams },
      () => downloadUntil(j.target, agent, j.bytesPerStream, deadline)))
    const ms = performance.now() - t0
    const bytes = each.reduce((a, r) => a + r.bytes, 0)
    const errors = each.flatMap((r) => r.error === undefined ? [] : [r.error])
    return {
      streams: j.streams,
      completed: each.length - errors.length,
      errors,
      bytes,
      ms,
      mbps: bytes / 1e6 / (ms / 1000),
      perStreamMs: each.map((r) => r.ms),
      stalledBytes
    }
  } finally {
    stalledReq?.destroy()
    agent.destroy()
  }
}

const idle: { reqs: http.ClientRequest[], agent?: http.Agent } = { reqs: [] }

/**
 * Opens up to `n` watch streams, `openConcurrency` at a time. Stops early
 * when no stream has opened for {@link IDLE_STALL_MS} (a path that caps
 * concurrent streams would otherwise burn the whole timeout): the figure is
 * then "opened < requested", with the first error.
 */
async function idleOpen (j: Extract<Job, { kind: 'idle-open' }>): Promise<object> {
  const agent = makeAgent(j.target, { keepAlive: true, maxSockets: Infinity })
  idle.agent = agent
  let opened = 0
  let failed = 0
  let next = 0
  let firstError: string | undefined
  let stalled = false
  let lastProgress = Date.now()
  const pending = new Set<http.ClientRequest>()
  const t0 = performance.now()
  let lastOpenAt = t0
  const deadline = Date.now() + j.timeoutMs
  const watchdog = setInterval(() => {
    if (Date.now() - lastProgress < IDLE_STALL_MS) return
    stalled = true
    for (const r of pending) r.destroy(new Error(`no stream opened for ${IDLE_STALL_MS} ms`))
  }, 1000)
  const openOne = (): Promise<void> => new Promise((resolve) => {
    const req = requestFn(j.target)(requestOptions(j.target, agent, 'GET', '/watch'), (res) => {
      res.once('data', () => { opened++; lastProgress = Date.now(); lastOpenAt = performance.now(); pending.delete(req); res.pause(); resolve() })
    })
    idle.reqs.push(req)
    pending.add(req)
    const timer = setTimeout(() => req.destroy(new Error('idle stream open timed out')), Math.max(1, deadline - Date.now()))
    req.once('error', (err) => { failed++; firstError ??= err.message; pending.delete(req); clearTimeout(timer); resolve() })
    req.once('response', () => clearTimeout(timer))
    req.end()
  })
  const worker = async (): Promise<void> => {
    while (next < j.n && Date.now() < deadline && !stalled) { next++; await openOne() }
  }
  await Promise.all(Array.from({ length: Math.min(j.openConcurrency, j.n) }, worker))
  clearInterval(watchdog)
  // Time to the last stream that opened (not to the give-up), so a capped path's figure is not inflated by the wait.
  return { requested: j.n, opened, failed, stalled, firstError, ms: lastOpenAt - t0 }
}

function idleClose (): object {
  const n = idle.reqs.length + idleCloseH2()
  for (const r of idle.reqs) r.destroy()
  idle.reqs = []
  idle.agent?.destroy()
  idle.agent = undefined
  return { closed: n }
}

/** Runs one job in this process (also usable in-process, for the measurement in README). */
export async function runJob (j: Job): Promise<object> {
  switch (j.kind) {
    case 'bulk': return await bulk(j)
    case 'rps':
      if (j.proto === 'h2') {
        if (j.newConnection) throw new Error('rps: h2 jobs are keep-alive only')
        return await rpsH2({ ...j, sessions: j.h2Sessions ?? 4 })
      }
      return await rps(j)
    case 'hol': return await hol(j)
    case 'idle-open': return j.proto === 'h2' ? await idleOpenH2({ ...j, stallMs: IDLE_STALL_MS }) : await idleOpen(j)
    case 'idle-close': return idleClose()
  }
}

if (import.meta.main) {
  process.on('message', (m: { id: number, job: Job }) => {
    runJob(m.job).then(
      (result) => process.send?.({ id: m.id, result }),
      (err: Error) => process.send?.({ id: m.id, error: err.message }))
  })
  process.once('disconnect', () => process.exit(0))
  process.send?.({ type: 'ready', pid: process.pid })
}
