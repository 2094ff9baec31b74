/**
 * The "application" behind the member's pods: an HTTP server on 127.0.0.1 that kwok's port-forward rule
 * points at. `GET /bytes/<n>` answers n deterministic bytes (see DeterministicStream) with a
 * Content-Length, so a client can tell a complete body from a cut one and check its sha256.
 */
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { Socket } from 'node:net'
import { CHUNK_BYTES, type DeterministicStream } from './rng.ts'

/** Largest body the server agrees to send (bytes). */
const MAX_BYTES = 512 * 1024 * 1024

/** A running byte server. */
export interface ByteServer {
  port: number
  close (): Promise<void>
}

/** Start the byte server on 127.0.0.1, port 0. */
export async function startByteServer (stream: DeterministicStream): Promise<ByteServer> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((req, res) => {
    const m = /^\/bytes\/(\d{1,10})$/.exec(req.url ?? '')
    const size = m === null ? NaN : Number(m[1])
    if (!Number.isSafeInteger(size) || size > MAX_BYTES) {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) })
    let i = 0
    let left = size
    const pump = (): void => {
      while (left > 0) {
        const c = stream.chunk(i++)
        const part = left >= CHUNK_BYTES ? c : c.subarray(0, left)
        left -= part.length
        if (!res.write(part)) {
          res.once('drain', pump)
          return
        }
      }
      res.end()
    }
    res.on('error', () => { /* the client went away */ })
    pump()
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const addr = server.address()
  if (addr === null || typeof addr === 'string') throw new Error('byte server: no port')
  return {
    port: addr.port,
    close: async () => {
      for (const s of sockets) s.destroy()
      server.close()
      if (server.listening) await once(server, 'close')
    }
  }
}
