// node:http over mux streams over one transport: a stream serves as the
// client's socket (createConnection) and as the server's (emit 'connection'),
// for plain requests and for an Upgrade followed by raw bytes.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import http from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import type { MuxStream, Session } from '../../src/index.ts'
import { sessionPair, until } from '../helpers.ts'
import type { Transport } from '../helpers.ts'

async function body (res: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of res) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString()
}

// An http.Server fed with the server session's inbound streams.
async function httpOverMux (t: TestContext, transport: Transport): Promise<{ client: Session, server: Session, httpServer: http.Server }> {
  const { client, server } = await sessionPair(t, transport)
  const httpServer = http.createServer((req, res) => {
    void body(req).then((text) => {
      res.setHeader('x-stream', String((req.socket as unknown as MuxStream).id))
      res.end(`${req.method} ${req.url} ${text}`)
    })
  })
  server.on('stream', (stream: MuxStream) => { httpServer.emit('connection', stream) })
  t.after(() => { httpServer.close() })
  return { client, server, httpServer }
}

/** Registers these tests over `transport` (the mux's own transports, or wsStream from the root tests). */
export function httpSuite (transport: Transport): void {
  describe(`node:http over ${transport.name}`, () => {
    it('serves requests with a mux stream as the socket on both sides', async (t) => {
      const { client, server } = await httpOverMux(t, transport)
      const results = await Promise.all([0, 1, 2].map(async (i) => {
        const req = http.request({ createConnection: () => client.open() as unknown as Socket, method: 'POST', path: `/echo/${i}`, headers: { host: 'tower' } })
        req.end(`body ${i}`)
        const [res] = await once(req, 'response') as [http.IncomingMessage]
        return { status: res.statusCode, stream: res.headers['x-stream'], text: await body(res) }
      }))
      for (const [i, r] of results.entries()) {
        assert.equal(r.status, 200)
        assert.equal(r.text, `POST /echo/${i} body ${i}`)
        assert.match(String(r.stream), /^[13579]\d*$/, 'the server saw an odd (client-opened) stream ID')
      }
      await until(() => client.numStreams === 0 && server.numStreams === 0, 5000, 'streams released')
    })

    it('keeps a stream alive across requests', async (t) => {
      const { client } = await httpOverMux(t, transport)
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
      // The agent asks for a socket through createConnection, as with a TCP connection.
      ;(agent as unknown as { createConnection: () => Socket }).createConnection = () => client.open() as unknown as Socket
      t.after(() => { agent.destroy() })
      const seen: string[] = []
      for (const path of ['/a', '/b', '/c']) {
        const req = http.request({ agent, path, headers: { host: 'tower' } })
        req.end()
        const [res] = await once(req, 'response') as [http.IncomingMessage]
        assert.equal(await body(res), `GET ${path} `)
        seen.push(String(res.headers['x-stream']))
      }
      assert.deepEqual(seen, [seen[0], seen[0], seen[0]], 'one stream carried all three requests')
      assert.equal(client.numStreams, 1)
    })

    it('upgrades a connection and relays raw bytes both ways', async (t) => {
      const { client, server, httpServer } = await httpOverMux(t, transport)
      httpServer.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${req.headers.upgrade}\r\n\r\n`)
        if (head.length > 0) socket.write(head)
        socket.pipe(socket)
      })
      const req = http.request({
        createConnection: () => client.open() as unknown as Socket,
        path: '/tunnel',
        method: 'POST',
        headers: { host: 'tower', connection: 'Upgrade', upgrade: 'SPDY/3.1' }
      })
      req.end()
      const [res, socket] = await once(req, 'upgrade') as [http.IncomingMessage, Duplex, Buffer]
      assert.equal(res.statusCode, 101)
      assert.equal(res.headers.upgrade, 'SPDY/3.1')
      const chunks: Buffer[] = []
      socket.on('data', (c: Buffer) => chunks.push(c))
      socket.write('ping ')
      socket.end('pong')
      await once(socket, 'end')
      assert.equal(Buffer.concat(chunks).toString(), 'ping pong')
      await until(() => client.numStreams === 0 && server.numStreams === 0, 5000, 'streams released')
    })
  })
}
