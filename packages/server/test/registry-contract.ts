/**
 * The behaviour every ClusterRegistry backend must show, as node:test
 * tests. A backend's test file calls `registryContract(label, make)` once;
 * `make` returns a fresh registry (and how to dispose of it) for every test.
 *
 * Only the contract is used, never a backend's internals. Backends may be
 * eventually consistent (the kubernetes one sees its own writes through
 * informers), so state that follows a write is polled with a deadline, and
 * cluster names carry a random suffix so tests can share one host cluster.
 * Imported by other packages as `@tower/server/registry-contract`.
 */
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, X509Certificate } from 'node:crypto'
import type { ClusterRegistry } from '@tower/server'

/** A registry under test and how to dispose of it. */
export interface ContractSubject {
  registry: ClusterRegistry
  cleanup: () => Promise<void>
}

/** Options of {@link registryContract}. */
export interface ContractOptions {
  /** How long to wait for state that follows a write, in milliseconds; default 15,000. */
  deadlineMs?: number
}

const HOSTILE_NAMES: unknown[] = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', '../x', 'a/b', 'x'.repeat(300), '', 'UPPER', ' a', 42, null, undefined, {}, [], Symbol.iterator]

/** Defines the contract tests for one backend. */
export function registryContract (label: string, make: () => Promise<ContractSubject>, opts: ContractOptions = {}): void {
  const deadlineMs = opts.deadlineMs ?? 15_000

  async function subject (t: TestContext): Promise<ClusterRegistry> {
    const s = await make()
    t.after(async () => { await s.cleanup() })
    return s.registry
  }

  async function eventually (what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
    const deadline = Date.now() + deadlineMs
    while (!(await cond())) {
      if (Date.now() > deadline) assert.fail(`not within ${deadlineMs} ms: ${what}`)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }

  // Resolves at the next `change` after it was called; fails after the deadline.
  function nextChange (registry: ClusterRegistry, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { registry.off('change', on); reject(new Error(`no change event within ${deadlineMs} ms after ${what}`)) }, deadlineMs)
      const on = (): void => { clearTimeout(timer); registry.off('change', on); resolve() }
      registry.on('change', on)
    })
  }

  // A cluster added through the contract, once the backend serves it.
  async function added (registry: ClusterRegistry, prefix = 'c'): Promise<{ name: string, token: string }> {
    const name = uniqueName(prefix)
    const { token } = await registry.add(name)
    await eventually(`${name} is listed after add`, () => registry.find(name) !== undefined)
    return { name, token }
  }

  describe(`registry contract: ${label}`, () => {
    test('kind, settings, CA and a serving certificate the CA signed', async (t) => {
      const registry = await subject(t)
      assert.ok(registry.kind === 'file' || registry.kind === 'kubernetes')
      assert.equal(typeof registry.settings.advertiseHost, 'string')
      assert.ok(Array.isArray(registry.settings.sans))
      const ca = new X509Certificate(registry.ca.certPem)
      const serving = new X509Certificate(registry.serverCertificate().certPem)
      assert.ok(serving.verify(ca.publicKey), 'the serving certificate is signed by the CA')
    })

    test('add, find, get and clusters() sorted by name', async (t) => {
      const registry = await subject(t)
      const base = uniqueName('s')
      const names = [`${base}-b`, `${base}-a`, `${base}-c`]
      const results = []
      for (const n of names) results.push(await registry.add(n, n.endsWith('-c') ? { mode: 'passthrough' } : { impersonate: n.endsWith('-b') }))
      for (const r of results) {
        assert.match(r.token, /^tower-agent_[A-Za-z0-9_-]{43}$/)
        assert.ok(names.includes(r.cluster.name))
      }
      await eventually('all three are listed', () => names.every((n) => registry.find(n) !== undefined))
      const listed = registry.clusters().map((c) => c.name)
      assert.deepEqual(listed, [...listed].sort((a, b) => a.localeCompare(b)), 'clusters() is sorted by name')
      assert.deepEqual(listed.filter((n) => names.includes(n)), [...names].sort())
      const a = registry.get(`${base}-a`)
      assert.equal(a.name, `${base}-a`)
      assert.equal(a.mode, 'proxy', 'proxy is the default mode')
      assert.equal(a.impersonate, false)
      assert.equal(registry.find(`${base}-b`)?.impersonate, true)
      assert.equal(registry.find(`${base}-c`)?.mode, 'passthrough')
      assert.equal(typeof a.uid, 'string')
      assert.notEqual(a.uid, registry.find(`${base}-b`)?.uid, 'every registration has its own uid')
      assert.equal(registry.find(uniqueName('absent')), undefined)
      assert.throws(() => registry.get(uniqueName('absent')), { code: 'TOWER_ERR_UNKNOWN_CLUSTER' })
    })

    test('a duplicate add is refused with TOWER_ERR_CLUSTER_EXISTS and keeps the first token', async (t) => {
      const registry = await subject(t)
      const { name, token } = await added(registry)
      await assert.rejects(registry.add(name), { code: 'TOWER_ERR_CLUSTER_EXISTS' })
      assert.ok(registry.authenticateAgent(name, token).ok, 'the first token still opens the cluster')
    })

    test('hostile names are unknown to every read, never throw there, and are refused by writes with a coded error', async (t) => {
      const registry = await subject(t)
      const { token } = await added(registry)
      for (const raw of HOSTILE_NAMES) {
        const name = raw as string
        const what = describeValue(raw)
        assert.equal(registry.find(name), undefined, what)
        assert.throws(() => registry.get(name), { code: 'TOWER_ERR_UNKNOWN_CLUSTER' }, what)
        assert.equal(registry.endpoint(name), undefined, what)
        const auth = registry.authenticateAgent(name, token)
        assert.equal(auth.ok, false, what)
        assert.equal(registry.agentCredentialValid(name, 'x'), false, what)
        assert.equal(registry.verifyCallerToken(name, 'tower-caller_x'), undefined, what)
        assert.doesNotThrow(() => registry.recordPorts(new Map([[name, 4321]])), what)
        let listed: unknown
        try {
          listed = registry.callerTokens(name)
        } catch (err) {
          listed = (err as { code?: unknown }).code
        }
        assert.ok(listed === 'TOWER_ERR_UNKNOWN_CLUSTER' || (Array.isArray(listed) && listed.length === 0), `${what}: callerTokens is [] or TOWER_ERR_UNKNOWN_CLUSTER`)
        if (raw !== 'constructor') await assert.rejects(registry.add(name), coded, `add ${what}`)
        await assert.rejects(registry.remove(name), coded, `remove ${what}`)
        await assert.rejects(registry.rotateAgentToken(name), coded, `rotate ${what}`)
        await assert.rejects(registry.issueCallerToken(name, { user: 'u', groups: [] }), coded, `issue ${what}`)
        await assert.rejects(registry.revokeCallerTokens(name, '*'), coded, `revoke tokens ${what}`)
        await assert.rejects(registry.revokeCertificate(name, 'ab'), coded, `revoke certificate ${what}`)
      }
      assert.equal((Object.prototype as Record<string, unknown>).agentTokenHash, undefined, 'nothing reached Object.prototype')
      assert.equal((Object.prototype as Record<string, unknown>).port, undefined, 'nothing reached Object.prototype')
    })

    test('authenticateAgent: the right token opens its cluster only; every refusal says why', async (t) => {
      const registry = await subject(t)
      const one = await added(registry)
      const two = await added(registry)
      const ok = registry.authenticateAgent(one.name, one.token)
      assert.ok(ok.ok)
      assert.equal(typeof ok.credential, 'string')
      assert.ok(registry.agentCredentialValid(one.name, ok.credential))
      assert.equal(registry.agentCredentialValid(two.name, ok.credential), false, 'a credential belongs to one cluster')
      assert.deepEqual(registry.authenticateAgent(one.name, one.token + 'x'), { ok: false, why: 'wrong-token' })
      assert.deepEqual(registry.authenticateAgent(two.name, one.token), { ok: false, why: 'wrong-token' })
      assert.deepEqual(registry.authenticateAgent(one.name, 42 as unknown as string), { ok: false, why: 'wrong-token' })
      assert.deepEqual(registry.authenticateAgent(uniqueName('absent'), one.token), { ok: false, why: 'unknown-cluster' })
      assert.deepEqual(registry.authenticateAgent('__proto__', one.token), { ok: false, why: 'invalid-name' })
    })

    test('rotation without grace: the old token and its credential stop at once', async (t) => {
      const registry = await subject(t)
      const { name, token } = await added(registry)
      const before = registry.authenticateAgent(name, token)
      assert.ok(before.ok)
      const changed = nextChange(registry, 'rotate')
      const next = await registry.rotateAgentToken(name)
      await changed
      assert.notEqual(next, token)
      await eventually('the new token opens the cluster', () => registry.authenticateAgent(name, next).ok)
      assert.deepEqual(registry.authenticateAgent(name, token), { ok: false, why: 'wrong-token' })
      assert.equal(registry.agentCredentialValid(name, before.credential), false)
      const stored = await registry.agentToken(name)
      assert.ok(stored === undefined || stored === next, 'agentToken is undefined or the current token')
      await assert.rejects(registry.rotateAgentToken(name, { graceMs: -1 }), { code: 'TOWER_ERR_INVALID_ARG' })
      await assert.rejects(registry.rotateAgentToken(name, { graceMs: 31 * 86_400_000 }), { code: 'TOWER_ERR_INVALID_ARG' })
    })

    test('rotation with a grace: the old token works until the grace ends, then its credential is invalid and change is emitted', async (t) => {
      const registry = await subject(t)
      const { name, token } = await added(registry)
      const before = registry.authenticateAgent(name, token)
      assert.ok(before.ok)
      const graceMs = 2000
      // The grace starts when the backend writes the rotation, which is before the call resolves.
      const rotatedAt = Date.now()
      const next = await registry.rotateAgentToken(name, { graceMs })
      await eventually('the new token opens the cluster', () => registry.authenticateAgent(name, next).ok)
      if (Date.now() - rotatedAt < graceMs - 200) {
        assert.ok(registry.authenticateAgent(name, token).ok, 'the old token still opens the cluster during the grace')
        assert.ok(registry.agentCredentialValid(name, before.credential), 'the old credential holds during the grace')
        const ended = nextChange(registry, 'the end of the grace')
        await ended
      }
      await eventually('the old credential is invalid after the grace', () => !registry.agentCredentialValid(name, before.credential))
      assert.equal(registry.authenticateAgent(name, token).ok, false)
      assert.ok(Date.now() - rotatedAt >= graceMs - 50, 'not before the grace ended')
    })

    test('remove: the cluster and its credentials are gone, and change is emitted', async (t) => {
      const registry = await subject(t)
      const { name, token } = await added(registry)
      const keep = await added(registry)
      const auth = registry.authenticateAgent(name, token)
      assert.ok(auth.ok)
      const changed = nextChange(registry, 'remove')
      await registry.remove(name)
      await changed
      await eventually('the credential is invalid', () => !registry.agentCredentialValid(name, auth.credential))
      await eventually('the cluster is not found', () => registry.find(name) === undefined)
      assert.equal(registry.authenticateAgent(name, token).ok, false)
      assert.ok(!registry.clusters().some((c) => c.name === name))
      assert.ok(registry.find(keep.name) !== undefined, 'other clusters are unaffected')
      await assert.rejects(registry.remove(name), { code: 'TOWER_ERR_UNKNOWN_CLUSTER' })
    })

    test('caller tokens: issue, verify, list without hashes, revoke by id and all', async (t) => {
      const registry = await subject(t)
      const { name } = await added(registry)
      const other = await added(registry)
      const one = await registry.issueCallerToken(name, { user: 'alice', groups: ['dev', 'ops'] })
      const two = await registry.issueCallerToken(name, { user: 'bob', groups: [] })
      assert.match(one.token, /^tower-caller_[A-Za-z0-9_-]{43}$/)
      assert.notEqual(one.id, two.id)
      await eventually('both tokens verify', () => registry.verifyCallerToken(name, two.token) !== undefined && registry.verifyCallerToken(name, one.token) !== undefined)
      assert.deepEqual(registry.verifyCallerToken(name, one.token), { user: 'alice', groups: ['dev', 'ops'] })
      assert.deepEqual(registry.verifyCallerToken(name, two.token), { user: 'bob', groups: [] })
      assert.equal(registry.verifyCallerToken(name, one.token + 'x'), undefined)
      assert.equal(registry.verifyCallerToken(other.name, one.token), undefined, 'a caller token opens its cluster only')
      const list = registry.callerTokens(name)
      assert.deepEqual(list.map((c) => c.id).sort(), [one.id, two.id].sort())
      for (const entry of list) {
        assert.deepEqual(Object.keys(entry).sort(), ['createdAt', 'groups', 'id', 'user'])
        assert.ok(!Number.isNaN(Date.parse(entry.createdAt)))
      }
      const text = JSON.stringify(list)
      assert.ok(!text.includes('sha256:') && !text.includes(one.token) && !text.includes(two.token), 'no hash or token is listed')
      await assert.rejects(registry.revokeCallerTokens(name, 'nope'), (err: any) => err.code === 'TOWER_ERR_UNKNOWN_TOKEN' && /nope/.test(err.message))
      assert.equal(await registry.revokeCallerTokens(name, one.id), 1)
      await eventually('the revoked token no longer verifies', () => registry.verifyCallerToken(name, one.token) === undefined)
      assert.deepEqual(registry.verifyCallerToken(name, two.token), { user: 'bob', groups: [] })
      assert.equal(await registry.revokeCallerTokens(name, '*'), 1)
      await eventually('no token verifies after "*"', () => registry.verifyCallerToken(name, two.token) === undefined)
      assert.deepEqual(registry.callerTokens(name), [])
    })

    test('revokeCertificate: a serial is normalised and added once; a malformed one is refused', async (t) => {
      const registry = await subject(t)
      const { name } = await added(registry)
      assert.equal(await registry.revokeCertificate(name, '0A:BC:DE'), true)
      await eventually('the serial is listed', () => registry.find(name)?.revokedSerials.includes('abcde') === true)
      assert.equal(await registry.revokeCertificate(name, 'abcde'), false, 'the same serial, normalised, was already there')
      await assert.rejects(registry.revokeCertificate(name, 'not-hex'), { code: 'TOWER_ERR_INVALID_ARG' })
      await assert.rejects(registry.revokeCertificate(name, 'a'.repeat(41)), { code: 'TOWER_ERR_INVALID_ARG' })
    })

    test('change is emitted after every write', async (t) => {
      const registry = await subject(t)
      const name = uniqueName('w')
      const writes: Array<[string, () => Promise<unknown>]> = [
        ['add', async () => await registry.add(name)],
        ['issueCallerToken', async () => {
          await eventually('listed', () => registry.find(name) !== undefined)
          return await registry.issueCallerToken(name, { user: 'u', groups: [] })
        }],
        ['revokeCallerTokens', async () => await registry.revokeCallerTokens(name, '*')],
        ['rotateAgentToken', async () => await registry.rotateAgentToken(name)],
        ['revokeCertificate', async () => await registry.revokeCertificate(name, 'ff')],
        ['remove', async () => await registry.remove(name)]
      ]
      for (const [what, write] of writes) {
        const changed = nextChange(registry, what)
        await write()
        await changed
      }
    })

    test('endpoint(): host and port of a cluster with a port; undefined for an unknown one', async (t) => {
      const registry = await subject(t)
      const { name } = await added(registry)
      await eventually('the endpoint is known', () => registry.endpoint(name) !== undefined)
      const endpoint = registry.endpoint(name)!
      assert.equal(typeof endpoint.host, 'string')
      assert.ok(endpoint.host.length > 0)
      assert.ok(Number.isInteger(endpoint.port) && endpoint.port > 0 && endpoint.port <= 65535, `port ${endpoint.port}`)
      assert.equal(registry.endpoint(uniqueName('absent')), undefined)
    })
  })
}

function coded (err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && code.startsWith('TOWER_ERR_')
}

function uniqueName (prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`
}

function describeValue (v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 20) + `…(${v.length})` : v)
  if (typeof v === 'symbol') return v.toString()
  return `${typeof v} ${JSON.stringify(v) ?? String(v)}`
}
