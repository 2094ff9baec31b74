// Test helper: a connected pair of WebSockets over real TCP on 127.0.0.1.
import { once } from 'node:events'
import { WebSocket, WebSocketServer, type ServerOptions } from 'ws'
import type { AddressInfo } from 'node:net'
import { wsClientOptions, wsServerOptions } from '../src/config.ts'

export interface WsPair {
  client: WebSocket
  server: WebSocket
  close (): Promise<void>
}

export async function wsPair (serverOverrides: ServerOptions = {}): Promise<WsPair> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...wsServerOptions(), ...serverOverrides })
  await once(wss, 'listening')
  const { port } = wss.address() as AddressInfo
  const accepted = once(wss, 'connection') as Promise<[WebSocket]>
  const client = new WebSocket(`ws://127.0.0.1:${port}`, wsClientOptions({ secure: false }))
  const [[server]] = await Promise.all([accepted, once(client, 'open')])
  return {
    client,
    server,
    async close () {
      for (const ws of [client, server]) ws.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    }
  }
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
