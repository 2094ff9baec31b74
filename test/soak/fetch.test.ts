// The soak's verdicts must be able to fail: a body cut short under a Content-Length, a chunked body cut
// before its terminator, a stalled body, a body that ends cleanly but short, and one with a flipped
// byte each get the outcome that fails (or is counted) in the soak. Real sockets on 127.0.0.1.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { after, before, test } from 'node:test'
import { fetchOnce } from './fetch.ts'
import { DeterministicStream } from './rng.ts'
import { classify } from './transfers.ts'
import { startByteServer, type ByteServer } from './byte-server.ts'

const stream = new DeterministicStream(7)
let bytes: ByteServer
let server: Server
let base: string

before(async () => {
  bytes = await startByteServer(stream)
  server = createServer((req, res) => {
    if (req.url === '/cut-length') {
      res.writeHead(200, { 'content-length': '100000' })
      res.write(Buffer.alloc(1000))
      setTimeout(() => res.socket?.destroy(), 50)
    } else if (req.url === '/cut-chunked') {
      res.writeHead(200)
      res.write(Buffer.alloc(1000))
      setTimeout(() => res.socket?.destroy(), 50)
    } else if (req.url === '/stall') {
      res.writeHead(200, { 'content-length': '100' })
      res.write('x')
    } else if (req.url === '/short-clean') {
      res.end(stream.chunk(0).subarray(0, 1000))
    } else {
      const body = Buffer.concat([stream.chunk(0), stream.chunk(1)])
      body[70_000] = body[70_000]! ^ 1
      res.end(body)
    }
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
})

after(async () => {
  server.closeAllConnections()
  server.close()
  await bytes.close()
})

const judge = (size: number) => async (path: string, stallMs = 5000): Promise<string> => {
  const r = await fetchOnce(new URL(path), { stallMs, hash: true })
  return classify(r, () => r.bytes !== size ? 'truncated' : r.sha256 === stream.sha256(size) ? 'ok' : 'corrupt')
}

test('the byte server\'s body verifies, and hashes differ by size', async () => {
  const size = 3 * 65536 + 123
  assert.equal(await judge(size)(`http://127.0.0.1:${bytes.port}/bytes/${size}`), 'ok')
  assert.notEqual(stream.sha256(size), stream.sha256(size - 1))
})

test('a cut body is interrupted (the client saw an error), with or without Content-Length', async () => {
  assert.equal(await judge(100000)(`${base}/cut-length`), 'interrupted')
  assert.equal(await judge(100000)(`${base}/cut-chunked`), 'interrupted')
})

test('a stalled body is hung', async () => {
  assert.equal(await judge(100)(`${base}/stall`, 300), 'hung')
})

test('a clean but short body is truncated, a flipped byte is corrupt, a refused connection is refused', async () => {
  assert.equal(await judge(65536)(`${base}/short-clean`), 'truncated')
  assert.equal(await judge(2 * 65536)(`${base}/flip`), 'corrupt')
  const closed = createServer()
  closed.listen(0, '127.0.0.1')
  await once(closed, 'listening')
  const port = (closed.address() as { port: number }).port
  closed.close()
  await once(closed, 'close')
  assert.equal(await judge(1)(`http://127.0.0.1:${port}/`), 'refused')
})
