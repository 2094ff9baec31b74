// Test helpers: WebSocket connections over real TCP on 127.0.0.1, with Tower's
// handshake and framing on one or both ends, and the `ws` library (an
// independent RFC 6455 implementation) on the other for interop.
import http from 'node:http'
import { EventEmitter, once } from 'node:events'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { WebSocket, WebSocketServer } from 'ws'
import { acceptUpgrade, requestUpgrade, upgradeProblem } from '../src/ws-handshake.ts'
import { wsStream, type WsStreamOptions } from '../src/ws-stream.ts'
import { SUBPROTOCOL } from '../src/constants.ts'

type StreamOpts = Omit<WsStreamOptions, 'role' | 'head'>

/** Our server end: an http server whose upgrades become server-role streams. */
export async function towerServer (opts: StreamOpts = {}): Promise<{ port: number, accepted: AsyncIterator<[Duplex, Socket]>, close (): Promise<void> }> {
  const server = http.createServer()
  const sockets = new Set<Socket>()
  server.on('connection', (s: Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)) })
  // accepted streams wait here until a test asks for them
  const queue: Array<[Duplex, Socket]> = []
  const emitter = new EventEmitter()
  server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    const problem = upgradeProblem(req)
    if (problem !== undefined) {
      socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-length: ${problem.length}\r\nconnection: close\r\n\r\n${problem}`)
      return
    }
    acceptUpgrade(req, socket, SUBPROTOCOL)
    queue.push([wsStream(socket, { ...opts, role: 'server', head }), socket])
    emitter.emit('stream')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as AddressInfo).port,
    accepted: (async function * () {
      for (;;) {
        while (queue.length === 0) await once(emitter, 'stream')
        yield queue.shift() as [Duplex, Socket]
      }
    })(),
    async close () {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

/** Our client end, connected to `port`. */
export async function towerClient (port: number, opts: StreamOpts = {}): Promise<{ stream: Duplex, socket: Socket }> {
  const { socket, head } = await requestUpgrade({ url: new URL(`ws://127.0.0.1:${port}/`), protocol: SUBPROTOCOL, timeoutMs: 5000 }).done
  return { stream: wsStream(socket, { ...opts, role: 'client', head }), socket }
}

export interface Pair {
  client: Duplex
  server: Duplex
  clientSocket: Socket
  serverSocket: Socket
  close (): Promise<void>
}

/** Tower on both ends. */
export async function towerPair (clientOpts: StreamOpts = {}, serverOpts: StreamOpts = {}): Promise<Pair> {
  const srv = await towerServer(serverOpts)
  const [{ stream: client, socket: clientSocket }, next] = await Promise.all([towerClient(srv.port, clientOpts), srv.accepted.next()])
  const [server, serverSocket] = next.value as [Duplex, Socket]
  return {
    client,
    server,
    clientSocket,
    serverSocket,
    async close () {
      client.destroy()
      server.destroy()
      await srv.close()
    }
  }
}

/** A `ws` library server; resolves its WebSocket once a client connects. */
export async function libServer (): Promise<{ port: number, connected: Promise<WebSocket>, close (): Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, handleProtocols: () => SUBPROTOCOL })
  await once(wss, 'listening')
  const connected = once(wss, 'connection').then(([ws]) => ws as WebSocket)
  return {
    port: (wss.address() as AddressInfo).port,
    connected,
    async close () {
      for (const ws of wss.clients) ws.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    }
  }
}

/** A `ws` library client connected to `port`. */
export async function libClient (port: number): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, SUBPROTOCOL, { perMessageDeflate: false })
  await once(ws, 'open')
  return ws
}

/** Resolves once `read()` has not changed for `quietMs`, or rejects after `deadlineMs`. */
export async function waitForStall (read: () => number, quietMs = 400, deadlineMs = 20_000): Promise<number> {
  const start = Date.now()
  let last = read()
  let since = Date.now()
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    const now = read()
    if (now !== last) {
      last = now
      since = Date.now()
    } else if (Date.now() - since >= quietMs) {
      return now
    }
    if (Date.now() - start > deadlineMs) throw new Error(`no stall within ${deadlineMs} ms (value ${now})`)
  }
}
