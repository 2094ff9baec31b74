// Pure units: NO_PROXY matching, backoff, option validation.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { NoProxy } from '../src/no-proxy.ts'
import { Backoff, MIN_ASKED_MS } from '../src/backoff.ts'
import { resolveAgentOptions, type AgentOptions } from '../src/config.ts'
import { readFileSync } from 'node:fs'
import { AGENT_PATH } from '@tower/transport'
import { isClusterName } from '@tower/pki'

test('NO_PROXY matching', () => {
  const np = new NoProxy('example.com, .internal,*.corp.net  10.0.0.0/8,host.test:8443,[::1],192.168.1.5')
  const bypass = (u: string): boolean => np.bypass(new URL(u))
  assert.equal(bypass('wss://example.com'), true)
  assert.equal(bypass('wss://api.example.com'), true)
  assert.equal(bypass('wss://notexample.com'), false)
  assert.equal(bypass('wss://a.internal'), true)
  assert.equal(bypass('wss://internal'), false)
  assert.equal(bypass('wss://x.corp.net'), true)
  assert.equal(bypass('wss://10.1.2.3:8443'), true)
  assert.equal(bypass('wss://11.1.2.3'), false)
  assert.equal(bypass('wss://host.test:8443'), true)
  assert.equal(bypass('wss://host.test'), false, 'host:port matches only that port (443 here)')
  assert.equal(bypass('wss://[::1]:9000'), true)
  assert.equal(bypass('wss://192.168.1.5'), true)
  assert.equal(bypass('wss://EXAMPLE.COM'), true)
  assert.equal(new NoProxy('*').bypass(new URL('wss://anything')), true)
  assert.equal(new NoProxy('').bypass(new URL('wss://anything')), false)
})

test('backoff: bounded, growing, reset, max', () => {
  for (const jitter of ['full', 'decorrelated'] as const) {
    const b = new Backoff({ minMs: 100, maxMs: 2000, jitter, random: () => 0.999 })
    const seq = Array.from({ length: 10 }, () => b.next())
    assert.ok(seq.every((d) => d >= 100 && d <= 2000), `${jitter}: ${seq.join(',')}`)
    assert.ok(seq[0] < seq[3], `${jitter} grows: ${seq.join(',')}`)
    assert.ok(seq[9] >= 1990, `${jitter} reaches the cap: ${seq.join(',')}`)
    assert.equal(b.attempt, 10)
    b.reset()
    assert.equal(b.attempt, 0)
    assert.ok(b.next() <= 300)
    assert.equal(b.max(), 2000)
    const low = new Backoff({ minMs: 100, maxMs: 2000, jitter, random: () => 0 })
    assert.equal(low.next(), 100)
  }
})

test('backoff: a server\'s Retry-After lands in the second before it, at least 100 ms, at most the maximum', () => {
  const at = (random: number, maxMs = 30_000): Backoff => new Backoff({ minMs: 1000, maxMs, jitter: 'decorrelated', random: () => random })
  assert.equal(at(0).asked(3), 3000)
  assert.equal(at(0.5).asked(3), 2500)
  assert.equal(at(0.999).asked(3), 2001)
  assert.equal(at(0.999).asked(1), MIN_ASKED_MS)
  assert.equal(at(0, 5000).asked(60), 5000)
  const b = at(0.5)
  b.asked(2)
  assert.equal(b.attempt, 1, 'a turn counts as an attempt')
  assert.equal(b.next(), 1000 + Math.round(0.5 * 2000), 'and leaves the exponential sequence where it was')
})

const base: AgentOptions = { serverUrl: 'wss://tower.example.com:8443', cluster: 'prod-eu', token: 'tok', caPem: '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n', upstream: { kind: 'in-cluster', host: '10.96.0.1', port: 443 } }

test('options: defaults and the agent path', () => {
  const r = resolveAgentOptions(base)
  assert.equal(r.serverUrl.pathname, AGENT_PATH)
  assert.equal(r.reconnectMinMs, 1000)
  assert.equal(r.reconnectMaxMs, 30_000)
  assert.match(r.agentId, /^[0-9a-f-]{36}$/)
  assert.equal(r.hopFrames, true)
  assert.equal(resolveAgentOptions({ ...base, hopFrames: false }).hopFrames, false)
  assert.equal(resolveAgentOptions({ ...base, serverUrl: 'wss://h/custom/path' }).serverUrl.pathname, '/custom/path')
  assert.equal(resolveAgentOptions({ ...base, httpsProxy: '' }).httpsProxy, undefined)
})

test('options: each bad value names its option', () => {
  const bad: Array<[Partial<AgentOptions>, RegExp]> = [
    [{ serverUrl: 'nope' }, /serverUrl/],
    [{ serverUrl: 'ftp://x' }, /serverUrl/],
    [{ serverUrl: 'wss://u:p@x' }, /credentials/],
    [{ cluster: 'Bad_Name' }, /cluster/],
    [{ token: '' }, /token/],
    [{ token: 'a b' }, /token/],
    [{ caPem: 'not pem' }, /caPem/],
    [{ caPem: undefined }, /caPem/],
    [{ agentId: 'has space' }, /agentId/],
    [{ httpsProxy: 'socks5://x' }, /httpsProxy/],
    [{ reconnectMinMs: 0 }, /reconnectMinMs/],
    [{ reconnectMinMs: 5000, reconnectMaxMs: 100 }, /reconnectMinMs/],
    [{ reconnectJitter: 'none' as 'full' }, /reconnectJitter/],
    [{ upstream: { kind: 'in-cluster', host: '', port: 443 } }, /upstream.host/],
    [{ upstream: { kind: 'in-cluster', host: 'h', port: 0 } }, /upstream.port/],
    [{ upstream: { kind: 'url', url: 'ftp://x' } }, /upstream.url/],
    [{ upstream: { kind: 'url', url: 'https://x', token: 'a', tokenFile: 'b' } }, /exclusive/],
    [{ upstream: { kind: 'kubeconfig', path: '' } }, /upstream.path/],
    [{ upstream: { kind: 'magic' } as never }, /upstream.kind/],
    [{ hopFrames: 'yes' as unknown as boolean }, /hopFrames \(--hop-frames\) must be a boolean/]
  ]
  for (const [patch, message] of bad) {
    assert.throws(() => resolveAgentOptions({ ...base, ...patch }), { code: 'TOWER_ERR_INVALID_ARG', message }, JSON.stringify(patch))
  }
})

test('options: session overrides are checked at construction; keepalive timeout must exceed the interval', () => {
  const bad: Array<[AgentOptions['session'], RegExp]> = [
    [{ keepAliveInterval: 10_000, keepAliveTimeout: 5000 }, /session\.keepAliveTimeout \(5000 ms\) must be greater than session\.keepAliveInterval \(10000 ms\)/],
    [{ keepAliveInterval: 40_000 }, /session\.keepAliveTimeout \(30000 ms\) must be greater than session\.keepAliveInterval \(40000 ms\)/],
    [{ keepAliveTimeout: 10_000 }, /session\.keepAliveTimeout/],
    [{ maxStreams: 0 }, /^session\.maxStreams/]
  ]
  for (const [session, message] of bad) {
    assert.throws(() => resolveAgentOptions({ ...base, session }), { code: 'TOWER_ERR_INVALID_ARG', message }, JSON.stringify(session))
  }
  // keepalive off, or a timeout above the interval, is fine
  resolveAgentOptions({ ...base, session: { keepAliveInterval: 0 } })
  resolveAgentOptions({ ...base, session: { keepAliveInterval: 5000, keepAliveTimeout: 20_000 } })
  assert.throws(() => resolveAgentOptions({ ...base, upstreamMaxSockets: 2.5 }), { code: 'TOWER_ERR_INVALID_ARG', message: /upstreamMaxSockets/ })
})

test('options: the cluster name rule is pki\'s isClusterName, the one rule', () => {
  for (const name of ['a', 'prod-eu', '0', 'a'.repeat(63), 'A', 'a_b', '-a', 'a-', 'a'.repeat(64), '', 'a.b', 'constructor', '__proto__']) {
    let accepted = true
    try {
      resolveAgentOptions({ ...base, cluster: name })
    } catch {
      accepted = false
    }
    assert.equal(accepted, isClusterName(name), name)
  }
  const source = readFileSync(new URL('../src/config.ts', import.meta.url), 'utf8')
  assert.doesNotMatch(source, /CLUSTER_NAME_PATTERN/)
})

test('options: messages name the tower agent flag next to the option', () => {
  const cases: Array<[Partial<AgentOptions>, RegExp]> = [
    [{ caPem: undefined }, /caPem \(--ca-file\) is required .*insecureSkipVerify \(--insecure-skip-verify\)/],
    [{ serverUrl: 'ws://h:1' }, /serverUrl \(--server\) is cleartext ws:\/\/.*allowInsecureWs \(--allow-insecure-ws\)/],
    [{ cluster: 'Bad' }, /^cluster \(--cluster\) must be a DNS label/],
    [{ reconnectMinMs: -1 }, /^reconnectMinMs \(--reconnect-min-ms\)/],
    [{ upstreamMaxSockets: 0 }, /^upstreamMaxSockets \(--upstream-max-sockets\)/],
    [{ upstream: { kind: 'url', url: 'https://x', caPem: 'nope' } }, /^upstream\.caPem \(--upstream-ca-file\)/]
  ]
  for (const [patch, message] of cases) {
    assert.throws(() => resolveAgentOptions({ ...base, ...patch }), { code: 'TOWER_ERR_INVALID_ARG', message }, JSON.stringify(patch))
  }
})
