// The agent's hop-frame path (kind hframe; hop-handler.ts, hop-exchange.ts)
// over an in-memory mux session pair, against a real node:http2 TLS upstream
// (allowHTTP1) and an HTTP/1.1-only HTTPS upstream.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { encodeRequestHead } from '@tower/transport'
import { startH2Upstream } from './fixtures/h2-upstream.ts'
import { header, hopRig, startHopUpstream, type HopClient } from './hop-rig.ts'
import { SA_TOKEN } from './harness.ts'
import { AgentMetrics, createMetricsRegistry } from '../src/metrics.ts'

const HEADERS = ['host', 'tower.example:443', 'user-agent', 'kubectl/v1.32.0', 'accept', 'application/json', 'impersonate-user', 'alice', 'impersonate-group', 'devs', 'impersonate-group', 'ops', 'authorization', 'Bearer caller-token']

interface Echo { method: string, path: string, headers: Record<string, string | string[]>, body: string, httpVersion: string }

async function echo (c: HopClient, method: string, body?: Buffer[], extra: string[] = []): Promise<{ status: number, headers: string[], echo: Echo }> {
  const r = await c.exchange({ method, path: '/echo?x=1', headers: [...HEADERS, ...extra] }, body)
  return { status: r.head.status, headers: r.head.headers, echo: JSON.parse(r.body.toString()) as Echo }
}

async function until (what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

for (const kind of ['h2', 'h1'] as const) {
  test(`${kind} upstream: GET carries the agent's credential and the caller's headers, the response's headers come back lower-case`, async (t) => {
    const up = await startHopUpstream(kind)
    t.after(() => up.close())
    const rig = hopRig(t, up.url, up.caPem)
    const c = rig.open()
    const r = await echo(c, 'GET')
    assert.equal(r.status, 200)
    assert.equal(r.echo.httpVersion, kind === 'h2' ? '2.0' : '1.1')
    assert.equal(r.echo.path, '/echo?x=1')
    assert.equal(r.echo.headers.authorization, `Bearer ${SA_TOKEN}`)
    assert.equal(r.echo.headers['impersonate-user'], 'alice')
    // the upstream's own authority, never the caller's Host
    assert.equal(kind === 'h2' ? r.echo.headers[':authority'] : r.echo.headers.host, new URL(up.url).host)
    assert.equal(header(r.headers, 'x-test'), 'yes')
    assert.ok(header(r.headers, 'content-length') !== undefined)
    assert.ok(r.headers.every((h, i) => i % 2 === 1 || h === h.toLowerCase()))
  })

  test(`${kind} upstream: POST with a body of known length and one without (chunked upstream on HTTP/1.1)`, async (t) => {
    const up = await startHopUpstream(kind)
    t.after(() => up.close())
    const rig = hopRig(t, up.url, up.caPem)
    const c = rig.open()
    const body = [Buffer.from('{"kind":'), Buffer.from('"ConfigMap"}')]
    const known = await echo(c, 'POST', body, ['content-length', '20', 'content-type', 'application/json'])
    assert.equal(known.status, 200)
    assert.equal(known.echo.body, '{"kind":"ConfigMap"}')
    assert.equal(known.echo.headers['content-length'], '20')
    const big = Buffer.alloc(300_000, 0x62)
    const unknown = await echo(c, 'PUT', [0, 1, 2, 3, 4].map((i) => big.subarray(i * 65536, (i + 1) * 65536)))
    assert.equal(unknown.echo.body.length, big.length)
    if (kind === 'h1') assert.equal(unknown.echo.headers['transfer-encoding'], 'chunked')
  })

  test(`${kind} upstream: a watch streams, and resetting the tunnel stream cancels it upstream`, async (t) => {
    const up = await startHopUpstream(kind)
    t.after(() => up.close())
    const rig = hopRig(t, up.url, up.caPem)
    const c = rig.open()
    c.send({ method: 'GET', path: '/watch?watch=true', headers: HEADERS })
    const head = await c.next()
    assert.equal(head.type, 'response-head')
    assert.ok(head.type === 'response-head' && head.head.body && header(head.head.headers, 'content-length') === undefined)
    const first = await c.next()
    assert.ok(first.type === 'data' && first.chunk.toString().includes('ADDED'))
    up.events.emit('push', '{"type":"MODIFIED"}')
    const second = await c.next()
    assert.ok(second.type === 'data' && second.chunk.toString().includes('MODIFIED'))
    const closed = once(up.events, 'watch-closed')
    c.stream.destroy()
    await closed
    await until('the agent to drop the stream', () => rig.hop.size === 0)
  })

  test(`${kind} upstream: a 20 MB response to a reader that pauses stays bounded, then arrives whole`, async (t) => {
    const up = await startHopUpstream(kind)
    t.after(() => up.close())
    const rig = hopRig(t, up.url, up.caPem)
    const c = rig.open()
    const total = 20 * 1024 * 1024
    c.stream.pause()
    c.send({ method: 'GET', path: `/big?bytes=${total}`, headers: HEADERS })
    // wait until the upstream stops producing: every buffer on the way is full
    let last = -1
    let still = 0
    await until('the upstream to stall', () => {
      if (up.produced === last && up.produced > 0) still++
      else still = 0
      last = up.produced
      return still >= 10
    })
    // what is in flight: mux window and stream buffers, the TLS and h2 windows; far below the body
    assert.ok(up.produced < 8 * 1024 * 1024, `produced ${up.produced} bytes while nobody read`)
    c.stream.resume()
    const r = await c.response()
    assert.equal(r.head.status, 200)
    assert.equal(r.body.length, total)
    assert.equal(up.produced, total)
  })

  test(`${kind} upstream: 1,000 exchanges reuse one stream and one upstream connection`, async (t) => {
    const up = await startHopUpstream(kind)
    t.after(() => up.close())
    const rig = hopRig(t, up.url, up.caPem)
    const c = rig.open()
    for (let i = 0; i < 1000; i++) {
      const r = await c.exchange({ method: 'GET', path: `/echo?i=${i}`, headers: ['host', 'x'] })
      assert.equal(r.head.status, 200)
      assert.equal((JSON.parse(r.body.toString()) as Echo).path, `/echo?i=${i}`)
    }
    assert.equal(rig.hop.size, 1)
    // h2: the ALPN probe's connection is the session; h1: one keep-alive socket
    assert.equal(up.connections, 1)
  })
}

test('GOAWAY: a request the upstream did not process is replayed with its body on a new session', async (t) => {
  const up = await startH2Upstream()
  t.after(() => up.close())
  const rig = hopRig(t, up.url, up.caPem)
  const c = rig.open()
  // the first stream of a session cannot be the one refused (see the fixture)
  assert.equal((await c.exchange({ method: 'GET', path: '/echo', headers: [] })).head.status, 200)
  const r = await c.exchange({ method: 'POST', path: '/goaway', headers: ['content-length', '5'] }, [Buffer.from('hello')])
  assert.equal(r.head.status, 200)
  const got = JSON.parse(r.body.toString()) as { session: number, body: string }
  assert.equal(got.session, 2)
  assert.equal(got.body, 'hello')
})

test('a malformed frame resets only its stream; the session and other streams go on', async (t) => {
  const up = await startHopUpstream('h2')
  t.after(() => up.close())
  const rig = hopRig(t, up.url, up.caPem)
  const good = rig.open()
  assert.equal((await echo(good, 'GET')).status, 200)
  for (const bad of [Buffer.from([9, 0, 0, 0, 0]), Buffer.from([2, 0, 0, 0, 1, 0x61]), Buffer.from([1, 0xff, 0xff, 0xff, 0xff])]) {
    const c = rig.open()
    c.stream.write(bad)
    assert.equal(await c.closed, 'reset')
  }
  // a response head from the server, and a second request head while one is open
  const rh = rig.open()
  rh.stream.write(Buffer.from([4, 0, 0, 0, 3, 0, 0, 200]))
  assert.equal(await rh.closed, 'reset')
  const twice = rig.open()
  twice.stream.write(Buffer.concat([encodeRequestHead({ method: 'GET', path: '/watch', headers: [], body: false }), Buffer.from([3, 0, 0, 0, 0])]))
  await twice.next()
  twice.stream.write(encodeRequestHead({ method: 'GET', path: '/echo', headers: [], body: false }))
  assert.equal(await twice.closed, 'reset')
  assert.equal(rig.far.closed, false)
  assert.equal((await echo(good, 'GET')).status, 200)
})

test('a content-length that the DATA does not match resets the stream before the upstream sees a short body', async (t) => {
  const up = await startHopUpstream('h1')
  t.after(() => up.close())
  const rig = hopRig(t, up.url, up.caPem)
  const short = rig.open()
  short.send({ method: 'POST', path: '/echo', headers: ['content-length', '10'] }, [Buffer.from('abc')])
  assert.equal(await short.closed, 'reset')
  const long = rig.open()
  long.send({ method: 'POST', path: '/echo', headers: ['content-length', '2'] }, [Buffer.from('abc')])
  assert.equal(await long.closed, 'reset')
})

test('an unreachable upstream and a target that is not a path are answered with a Status, and the stream stays usable', async (t) => {
  const up = await startHopUpstream('h1')
  const url = up.url
  await up.close()
  const rig = hopRig(t, url, up.caPem)
  const c = rig.open()
  const r = await c.exchange({ method: 'POST', path: '/api/v1/namespaces', headers: ['content-length', '2'] }, [Buffer.from('{}')])
  assert.equal(r.head.status, 502)
  const status = JSON.parse(r.body.toString()) as { kind: string, code: number, message: string }
  assert.equal(status.kind, 'Status')
  assert.match(status.message, /upstream unreachable/)
  const bad = await c.exchange({ method: 'GET', path: '//169.254.169.254/latest', headers: [] })
  assert.equal(bad.head.status, 400)
  assert.equal(rig.hop.size, 1)
})

test('closeIdle ends idle hframe streams with FIN and leaves a busy one open', async (t) => {
  const up = await startHopUpstream('h2')
  t.after(() => up.close())
  const rig = hopRig(t, up.url, up.caPem)
  const idle = rig.open()
  assert.equal((await echo(idle, 'GET')).status, 200)
  const busy = rig.open()
  busy.send({ method: 'GET', path: '/watch', headers: [] })
  assert.equal((await busy.next()).type, 'response-head')
  rig.hop.closeIdle()
  await once(idle.stream, 'end')
  idle.stream.end()
  assert.equal(await idle.closed, 'end')
  assert.equal(busy.stream.readableEnded, false)
})

test('upstream dial metrics count on the hop-frame path: h2 and HTTP/1.1 dials, and a refused dial', async (t) => {
  const metrics = new AgentMetrics(createMetricsRegistry())
  // a histogram's series carry their own metricName (..._count); a counter's do not
  const value = async (name: string, labels: Record<string, string>): Promise<number> => {
    const base = name.replace(/_count$/, '')
    const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === base)
    const v = (m?.values as Array<{ value: number, labels: Record<string, unknown>, metricName?: string }> | undefined)
      ?.find((x) => (x.metricName ?? base) === name && Object.entries(labels).every(([k, l]) => x.labels[k] === l))
    return v?.value ?? 0
  }
  for (const kind of ['h2', 'h1'] as const) {
    const up = await startHopUpstream(kind)
    t.after(() => up.close())
    const c = hopRig(t, up.url, up.caPem, kind === 'h2' ? 'auto' : 'off', metrics).open()
    assert.equal((await echo(c, 'GET')).status, 200)
  }
  assert.equal(await value('tower_agent_upstream_dial_duration_seconds_count', { protocol: 'h2' }), 1)
  assert.equal(await value('tower_agent_upstream_dial_duration_seconds_count', { protocol: 'http/1.1' }), 1)
  const gone = await startHopUpstream('h1')
  await gone.close()
  const c = hopRig(t, gone.url, gone.caPem, 'off', metrics).open()
  assert.equal((await c.exchange({ method: 'GET', path: '/echo', headers: [] })).head.status, 502)
  assert.equal(await value('tower_agent_upstream_dial_failures_total', { reason: 'refused' }), 1)
})
