// Close codes (RFC 6455 §5.5.1, §7.4): what Tower's end accepts, echoes and
// answers, against a raw peer that can send anything.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { Duplex } from 'node:stream'
import { towerServer } from './ws-pair.ts'
import { clientFrame, closeBody, rawClient, serverCloseCode } from './raw-peer.ts'
import { Opcode } from '../src/ws-frame.ts'

interface Outcome { answered: number, err: Error & { code?: string, closeCode?: number } }

// Connects a raw client, has it send `wire`, and returns the close code the
// server answered with and the error its stream was destroyed with.
async function closeWith (t: { after: (fn: () => Promise<void>) => void }, wire: Buffer, setup?: (server: Duplex) => void): Promise<Outcome> {
  const srv = await towerServer()
  t.after(() => srv.close())
  const client = await rawClient(srv.port)
  const [server] = (await srv.accepted.next()).value as [Duplex]
  setup?.(server)
  const answered = serverCloseCode(client)
  const errored = once(server, 'error') as Promise<[Outcome['err']]>
  client.write(wire)
  const [[err], code] = await Promise.all([errored, answered])
  client.destroy()
  return { answered: code, err }
}

test('a close code that must never be sent (1005, 1006, 1015, 1004, 0, 999, 1016, 2999, 5000) is answered with 1002, not echoed', async (t) => {
  for (const code of [1005, 1006, 1015, 1004, 0, 999, 1016, 2999, 5000]) {
    const { answered, err } = await closeWith(t, clientFrame(Opcode.close, closeBody(code)))
    assert.equal(answered, 1002, `code ${code}`)
    assert.equal(err.code, 'TOWER_ERR_WS_PROTOCOL', `code ${code}`)
    assert.equal(err.closeCode, 1002, `code ${code}`)
  }
})

test('valid error codes (1002, 1011, 1014, 3000, 4999) are echoed', async (t) => {
  for (const code of [1002, 1011, 1014, 3000, 4999]) {
    const { answered, err } = await closeWith(t, clientFrame(Opcode.close, closeBody(code, 'why')))
    assert.equal(answered, code)
    assert.equal(err.code, 'TOWER_ERR_WS_CLOSED')
    assert.equal(err.closeCode, code)
  }
})

test('a 1-byte close body is a protocol error: 1002', async (t) => {
  const { answered, err } = await closeWith(t, clientFrame(Opcode.close, Buffer.from([0x03])))
  assert.equal(answered, 1002)
  assert.equal(err.code, 'TOWER_ERR_WS_PROTOCOL')
  assert.match(err.message, /1-byte/)
})

test('a close reason that is not valid UTF-8 is answered with 1007', async (t) => {
  for (const reason of [Buffer.from([0xff]), Buffer.from([0xc3]), Buffer.from([0xed, 0xa0, 0x80])]) {
    const { answered, err } = await closeWith(t, clientFrame(Opcode.close, closeBody(1000, reason)))
    assert.equal(answered, 1007)
    assert.equal(err.code, 'TOWER_ERR_WS_PROTOCOL')
    assert.equal(err.closeCode, 1007)
  }
})

test('an error that is not a framing error (a throwing data listener) closes with 1011, never 0', async (t) => {
  const bug = new Error('consumer bug')
  const { answered, err } = await closeWith(t, clientFrame(Opcode.binary, Buffer.from('payload')), (server) => {
    server.on('data', () => { throw bug })
  })
  assert.equal(answered, 1011)
  assert.equal(err, bug)
})

test('bytes after a Close are discarded: a bad frame behind a clean Close does not turn it into an error', async (t) => {
  const srv = await towerServer()
  t.after(() => srv.close())
  const client = await rawClient(srv.port)
  const [server] = (await srv.accepted.next()).value as [Duplex]
  let error: Error | undefined
  server.on('error', (err: Error) => { error = err })
  server.resume()
  const answered = serverCloseCode(client)
  const ended = once(server, 'end')
  const closed = new Promise((resolve) => server.once('close', resolve))
  // a Close 1000, then a text frame, then an unmasked continuation, in one write
  client.write(Buffer.concat([clientFrame(Opcode.close, closeBody(1000)), clientFrame(Opcode.text, Buffer.from('x')), Buffer.from([0x00, 0x00])]))
  assert.equal(await answered, 1000)
  await ended
  client.end()
  await closed
  assert.equal(error, undefined)
})

test('a write that races the peer\'s clean Close (a late Pong or window update) is dropped, not a 1006', async (t) => {
  const srv = await towerServer()
  t.after(() => srv.close())
  const client = await rawClient(srv.port)
  const [server] = (await srv.accepted.next()).value as [Duplex]
  const errors: Error[] = []
  server.on('error', (err) => errors.push(err))
  server.resume()
  // A write still queued when the peer's Close arrives (corked here, as a
  // mux batch waits for its tick).
  server.cork()
  const written = new Promise<Error | null | undefined>((resolve) => server.write(Buffer.from('late'), resolve))
  const answered = serverCloseCode(client)
  client.write(clientFrame(Opcode.close, closeBody(1000)))
  assert.equal(await answered, 1000)
  assert.equal(await written ?? null, null)
  await new Promise((resolve) => setImmediate(resolve))
  assert.deepEqual(errors.map((e) => e.message), [])
  client.destroy()
  server.destroy()
})
