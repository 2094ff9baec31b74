// One concept, one place (issue 8): the hop-by-hop list, the Status writer
// and the upgrade relay each live in one transport module that both ends
// use. The unit checks of the shared hop-by-hop helpers sit here too.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { HOP_BY_HOP_HEADERS, dropSet, filterRawHeaders, withConnectionOptions } from '../src/hop-by-hop.ts'

const PACKAGES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

// Every .ts source file under packages/*/src, relative to packages/.
function sources (): Array<{ file: string, text: string }> {
  const out: Array<{ file: string, text: string }> = []
  for (const pkg of fs.readdirSync(PACKAGES)) {
    const src = path.join(PACKAGES, pkg, 'src')
    if (!fs.existsSync(src)) continue
    for (const entry of fs.readdirSync(src, { recursive: true, encoding: 'utf8' })) {
      if (!entry.endsWith('.ts') || entry.endsWith('.d.ts')) continue
      out.push({ file: `${pkg}/src/${entry}`, text: fs.readFileSync(path.join(src, entry), 'utf8') })
    }
  }
  return out
}

function holders (pattern: RegExp): string[] {
  return sources().filter((s) => pattern.test(s.text)).map((s) => s.file).sort()
}

test('one hop-by-hop list: only transport/src/hop-by-hop.ts spells it', () => {
  assert.deepEqual(holders(/['"]proxy-authenticate['"]/), ['transport/src/hop-by-hop.ts'])
})

test('one Status writer: only transport/src/http-status.ts builds a Status object or an error status line', () => {
  assert.deepEqual(holders(/kind: ['"]Status['"]/), ['transport/src/http-status.ts'])
  // a hand-written error answer on a raw socket: "HTTP/1.1 4xx" / "5xx" literal or a `${code}` status line ended by end()
  assert.deepEqual(holders(/HTTP\/1\.1 [45]\d\d/), [])
  assert.deepEqual(holders(/\.end\(`HTTP\/1\.1/), [])
})

test('one upgrade relay: only transport/src/upgrade-relay.ts relays an upstream 101', () => {
  // the agent's WebSocket dial (ws-handshake.ts) takes its own 101; every relay of one is the shared module
  const relays = sources().filter((s) => /\.(once|on)\('upgrade', \((res|upRes)[^)]*, (upSocket|socket)[^)]*, (upHead|head)/.test(s.text) && /splice\(/.test(s.text)).map((s) => s.file)
  assert.deepEqual(relays, ['transport/src/upgrade-relay.ts'])
})

test('hop-by-hop and Connection-listed headers are dropped from a raw list; order and repeats of the rest are kept', () => {
  const raw = ['Host', 'h', 'Connection', 'keep-alive, X-Drop', 'X-Drop', '1', 'TE', 'trailers', 'Impersonate-Group', 'a', 'X-Keep', 'k', 'Impersonate-Group', 'b', 'Transfer-Encoding', 'chunked']
  const drop = withConnectionOptions(dropSet(['host']), 'keep-alive, X-Drop')
  assert.deepEqual(filterRawHeaders(raw, drop), ['Impersonate-Group', 'a', 'X-Keep', 'k', 'Impersonate-Group', 'b'])
})

test('Connection cannot name impersonate-* headers away, and the base set is reused when nothing is listed', () => {
  const base = dropSet()
  assert.equal(withConnectionOptions(base, undefined), base)
  assert.equal(withConnectionOptions(base, 'close, keep-alive'), base)
  const drop = withConnectionOptions(base, ['Impersonate-User, impersonate-group', 'x-a'])
  assert.equal(drop.has('impersonate-user'), false)
  assert.equal(drop.has('impersonate-group'), false)
  assert.equal(drop.has('x-a'), true)
  assert.equal(base.has('x-a'), false, 'the shared base set is never modified')
})

test('the list is RFC 9110 §7.6.1 plus the legacy proxy headers', () => {
  assert.deepEqual([...HOP_BY_HOP_HEADERS].sort(), ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'])
})
