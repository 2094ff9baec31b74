/**
 * The health listener's bounds: a connection cap, a head timeout, a metrics
 * renderer that fails, and nothing but three paths.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { once } from 'node:events'
import { silentLogger } from '@tower/mux'
import { HealthServer } from '../src/index.ts'

async function start (t: { after: (fn: () => Promise<void>) => void }, extra: Partial<ConstructorParameters<typeof HealthServer>[0]> = {}): Promise<number> {
  const health = new HealthServer({
    host: '127.0.0.1',
    port: 0,
    metrics: async () => ({ contentType: 'text/plain; version=0.0.4; charset=utf-8', body: 'x_total 1\n' }),
    readiness: () => ({ ready: true, reasons: [] }),
    logger: silentLogger,
    ...extra
  })
  t.after(() => health.close())
  return await health.listen()
}

async function raw (port: number, request: string): Promise<string> {
  const socket = net.connect(port, '127.0.0.1')
  socket.end(request)
  const chunks: Buffer[] = []
  for await (const c of socket) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString()
}

test('a peer that never sends its head is closed after the head timeout', async (t) => {
  const port = await start(t, { headersTimeoutMs: 300 })
  const socket = net.connect(port, '127.0.0.1')
  const started = Date.now()
  socket.resume()
  await once(socket, 'close')
  const ms = Date.now() - started
  assert.ok(ms >= 250 && ms < 5000, `closed after ${ms} ms`)
})

test('connections beyond the cap are closed at accept; the ones within still answer', async (t) => {
  const port = await start(t, { maxConnections: 3 })
  const held = await Promise.all([0, 1, 2].map(async () => {
    const s = net.connect(port, '127.0.0.1')
    await once(s, 'connect')
    return s
  }))
  t.after(async () => { for (const s of held) s.destroy() })
  const extra = net.connect(port, '127.0.0.1')
  extra.resume()
  await once(extra, 'close')
  held[0]!.write('GET /livez HTTP/1.1\r\nhost: x\r\n\r\n')
  const [data] = await once(held[0]!, 'data') as [Buffer]
  assert.match(data.toString(), /^HTTP\/1\.1 200 /)
})

test('a failing metrics renderer answers 500; the path set is closed', async (t) => {
  const port = await start(t, { metrics: async () => { throw new Error('boom') } })
  assert.match(await raw(port, 'GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), /^HTTP\/1\.1 500 /)
  assert.match(await raw(port, 'GET /metrics/../livez HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), /^HTTP\/1\.1 404 /)
  assert.match(await raw(port, 'DELETE /livez HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), /^HTTP\/1\.1 405 [^]*allow: GET, HEAD/i)
  assert.match(await raw(port, 'GET /livez HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), /^HTTP\/1\.1 200 [^]*\r\n\r\nok\n$/)
})
