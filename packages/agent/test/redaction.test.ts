// Secrets never reach the agent's logs: the join token, the upstream token
// and a caller's Authorization, at every level (trace included), even when a
// server or proxy echoes the request back in its refusal.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { rig, JOIN_TOKEN, SA_TOKEN, waitForLog, type LogEntry } from './harness.ts'
import { fetchText } from './fixtures/fake-server.ts'
import { startTestUpstream } from './fixtures/upstream.ts'

const CALLER_TOKEN = 'caller-secret-7f3a'
const KUBECONFIG_TOKEN = 'kubeconfig-secret-91c2'

function leaks (logs: LogEntry[], secrets: string[]): string[] {
  const out: string[] = []
  for (const e of logs) {
    const text = JSON.stringify({ msg: e.msg, obj: e.obj }, (_k, v: unknown) => v instanceof Error ? { message: v.message, stack: v.stack, cause: v.cause } : v)
    for (const s of secrets) if (text.includes(s)) out.push(`${e.level} ${e.msg ?? ''}: contains ${s}`)
  }
  return out
}

test('log sink: no join token, upstream token or caller token in any log line, even when the server echoes the request', async (t) => {
  let refusals = 2
  const { server, logs } = await rig(t, {
    server: {
      refuse: () => refusals-- > 0 ? (refusals === 1 ? 403 : 502) : undefined,
      // a proxy or a hostile server quoting the request headers back
      refusalMessage: (req) => `denied: ${req.headers.authorization ?? ''} for ${JSON.stringify(req.headers)}`
    }
  })
  await waitForLog(logs, (e) => e.msg === 'connected to server')
  // requests with a caller credential; a malformed one; a tunnelled passthrough to the upstream
  const res = await fetchText(server.request('/echo', { headers: { authorization: `Bearer ${CALLER_TOKEN}`, 'x-note': CALLER_TOKEN } }))
  assert.equal(res.status, 200)
  assert.equal((JSON.parse(res.body) as { headers: Record<string, string> }).headers.authorization, `Bearer ${SA_TOKEN}`)
  const bad = server.open('http')
  bad.on('error', () => {})
  bad.end(`GET /x HTTP/1.1\r\nAuthorization: Bearer ${CALLER_TOKEN}\r\nBad Header\r\n\r\n`)
  bad.resume()
  await waitForLog(logs, (e) => /malformed request/.test(e.msg ?? ''))
  assert.ok(logs.some((e) => /rejected|cannot connect/.test(e.msg ?? '')), 'the refusals were logged')
  assert.deepEqual(leaks(logs, [JOIN_TOKEN, SA_TOKEN, CALLER_TOKEN]), [])
})

test('log sink: a kubeconfig token never appears, also when start() fails on that kubeconfig', async (t) => {
  const upstream = await startTestUpstream()
  t.after(() => upstream.close())
  const dir = mkdtempSync(join(tmpdir(), 'tower-redact-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const config = (user: Record<string, unknown>): string => stringify({
    clusters: [{ name: 'm', cluster: { server: upstream.url, 'certificate-authority-data': Buffer.from(upstream.caPem).toString('base64'), 'proxy-url': 'http://proxy.invalid:3128' } }],
    users: [{ name: 'u', user }],
    contexts: [{ name: 'c', context: { cluster: 'm', user: 'u' } }],
    'current-context': 'c'
  })
  writeFileSync(join(dir, 'ok'), config({ token: KUBECONFIG_TOKEN }))
  const { server, logs } = await rig(t, { upstream, agent: { upstream: { kind: 'kubeconfig', path: join(dir, 'ok') } } })
  await fetchText(server.request('/echo'))
  assert.ok(logs.some((e) => /proxy-url/.test(e.msg ?? '')))
  assert.deepEqual(leaks(logs, [KUBECONFIG_TOKEN, JOIN_TOKEN]), [])
  // an error about the file names the field, never the token's value
  writeFileSync(join(dir, 'bad'), config({ token: KUBECONFIG_TOKEN, as: 'someone' }))
  const { Agent } = await import('../src/index.ts')
  const agent = new Agent({ serverUrl: 'ws://127.0.0.1:1', allowInsecureWs: true, cluster: 'c', token: JOIN_TOKEN, upstream: { kind: 'kubeconfig', path: join(dir, 'bad') } })
  assert.throws(() => agent.start(), (err: Error) => !err.message.includes(KUBECONFIG_TOKEN) && !err.message.includes(JOIN_TOKEN))
})
