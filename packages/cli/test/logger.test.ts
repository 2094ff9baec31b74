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
