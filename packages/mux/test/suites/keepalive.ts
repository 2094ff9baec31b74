// Keepalive over one transport, on a mocked clock.
//
// A mock clock only handles timers created while it is installed, so each
// test builds and tears down everything it uses inside its own body and
// waits for the transports to close before the clock is restored.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { FrameType, Session } from '../../src/index.ts'
import { captureLogger, closeAll, framesOf, until } from '../helpers.ts'
import type { Transport } from '../helpers.ts'

function mockClock (t: TestContext): void {
  t.mock.timers.enable({ apis: ['setInterval', 'setTimeout'], now: 0 })
}

/** Registers these tests over `transport` (the mux's own transports, or wsStream from the root tests). */
export function keepaliveSuite (transport: Transport): void {
  describe(`keepalive over ${transport.name}`, () => {
    it('closes with KeepAliveTimeoutError when the peer never answers pings', async (t) => {
      const [a, raw] = await transport.pair(t)
      mockClock(t)
      const { logger, records } = captureLogger()
      // A fixed window: no RTT measurement ping at start, only keepalive pings.
      const session = new Session(a, { client: true, logger, keepAliveInterval: 1000, keepAliveTimeout: 500, maxWindow: 256 * 1024 })
      const chunks: Buffer[] = []
      raw.on('data', (c: Buffer) => chunks.push(c))
      raw.on('error', () => {})
      const closed = once(session, 'close') as Promise<[Error & { code?: string }]>

      await new Promise((resolve) => setImmediate(resolve))
      assert.equal(framesOf(Buffer.concat(chunks)).length, 0, 'nothing is sent before the first interval')
      t.mock.timers.tick(1000)
      await until(() => framesOf(Buffer.concat(chunks)).some((f) => f.type === FrameType.ping && f.flags === 1), 5000, 'keepalive ping')
      t.mock.timers.tick(499)
      assert.equal(session.closed, false)
      t.mock.timers.tick(1)
      const [err] = await closed
      assert.equal(err.code, 'TOWER_ERR_KEEPALIVE_TIMEOUT')
      assert.ok(records.some((r) => r.level === 'warn' && (r.obj.err as { code?: string } | undefined)?.code === 'TOWER_ERR_KEEPALIVE_TIMEOUT'))
      await closeAll([a, raw])
    })

    it('stays up while keepalive pings are answered', async (t) => {
      const [a, b] = await transport.pair(t)
      mockClock(t)
      const client = new Session(a, { client: true, keepAliveInterval: 1000, keepAliveTimeout: 500, maxWindow: 256 * 1024 })
      const server = new Session(b, { client: false, keepAliveInterval: 0, maxWindow: 256 * 1024 })
      // Each tick lands on a keepalive ping; its 500 ms timeout lies beyond the tick.
      for (let i = 0; i < 3; i++) {
        const before = client.rtt
        t.mock.timers.tick(1000)
        await until(() => client.rtt !== before, 5000, 'keepalive reply')
      }
      t.mock.timers.tick(600)
      assert.equal(client.closed, false)
      assert.equal(server.closed, false)
      client.destroy()
      server.destroy()
      await closeAll([a, b])
    })
  })
}
