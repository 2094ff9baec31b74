import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { createRootLogger } from '../src/logger.ts'

function capture (): { stream: Writable, lines: () => Array<Record<string, any>> } {
  let text = ''
  const stream = new Writable({ write (chunk, _enc, cb) { text += String(chunk); cb() } })
  return { stream, lines: () => text.trim().split('\n').map((l) => JSON.parse(l)) }
}

test('an error that already quotes its cause is logged once, with the cause\'s stack; others get the cause appended', () => {
  const out = capture()
  const log = createRootLogger('info', out.stream)
  const cause = new Error('websocket closed abnormally (1006)')
  log.warn({ err: new Error(`transport error: ${cause.message}`, { cause }) }, 'session closed')
  log.warn({ err: new Error('dial failed', { cause: new Error('ECONNREFUSED') }) }, 'no server')
  const [quoted, plain] = out.lines()
  assert.equal(quoted.err.message, 'transport error: websocket closed abnormally (1006)')
  assert.match(quoted.err.stack, /caused by: Error: websocket closed abnormally/)
  assert.equal(plain.err.message, 'dial failed: ECONNREFUSED')
})

test('credentials are redacted', () => {
  const out = capture()
  createRootLogger('info', out.stream).info({ token: 's3cret', headers: { authorization: 'Bearer s3cret' } }, 'x')
  const [line] = out.lines()
  assert.equal(line.token, '[redacted]')
  assert.equal(line.headers.authorization, '[redacted]')
})

test('item 24: every kind of secret is redacted wherever the code logs it', () => {
  const join = 'tower-agent_JOINJOINJOINJOIN'
  const caller = 'tower-caller_CALLERCALLER'
  const upstream = 'eyUPSTREAMUPSTREAM'
  const key = '-----BEGIN PRIVATE KEY-----\nKEYKEYKEY\n-----END PRIVATE KEY-----'
  const out = capture()
  const log = createRootLogger('trace', out.stream)
  log.info({ token: join, agentToken: join, headers: { authorization: `Bearer ${join}` } }, 'join')
  log.info({ callerToken: caller, req: { headers: { authorization: `Bearer ${caller}`, 'proxy-authorization': `Basic ${caller}` } } }, 'caller')
  log.info({ upstream: { token: upstream, bearerToken: upstream, user: { token: upstream, password: upstream } }, bearerToken: upstream }, 'upstream')
  log.info({ keyPem: key, tls: { key }, user: { clientKeyPem: key, clientKeyData: key }, ca: { keyPem: key }, privateKey: key, cert: { clientKey: key } }, 'keys')
  log.child({ component: 'x' }).warn({ opts: { upstream: { token: upstream } } }, 'nested')
  const text = JSON.stringify(out.lines())
  for (const secret of [join, caller, upstream, 'KEYKEYKEY']) assert.ok(!text.includes(secret), `${secret} leaked: ${text}`)
  assert.equal(out.lines().length, 5)
})
