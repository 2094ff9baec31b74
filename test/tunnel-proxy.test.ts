/**
 * Server + agent end to end in proxy mode, over real sockets, against the
 * HTTPS test upstream, with the real kubectl where it applies.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import https from 'node:https'
import http2 from 'node:http2'
import tls from 'node:tls'
import net from 'node:net'
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import { WebSocket } from 'ws'
import { createCa, issueClientCert } from '@tower/pki'
import { issueKubeconfig } from '@tower/server'
import type { Agent } from '@tower/agent'
import { startUpstream, type Upstream } from './fixtures/upstream.ts'
import { addCluster, startAgent, startTower, tempFile, type TestTower } from './helpers/tower.ts'
import { callerCert, get, kubectl, tlsOptions } from './helpers/clients.ts'

for (const hopFrames of [true, false]) {
  describe(`proxy mode, hop frames ${hopFrames ? 'on' : 'off'}`, () => {
    let up: Upstream
    let tower: TestTower
    let agent: Agent
    let port: number

    before(async () => {
      up = await startUpstream()
      tower = await startTower()
      const c = await addCluster(tower, 'prod-eu')
      port = c.port
      agent = await startAgent(tower, 'prod-eu', c.token, up, { hopFrames })
    })
    after(async () => {
      await agent.stop()
      await tower.stop()
      await up.close()
    })

    test('kubectl get --raw with the issued certificate kubeconfig; the agent credential replaces the caller\'s', async (t) => {
      const kc = tempFile(t, 'kc', await issueKubeconfig(tower.registry, { cluster: 'prod-eu' }))
      const out = JSON.parse(await kubectl(['--kubeconfig', kc, 'get', '--raw', '/api/v1/namespaces']))
      assert.equal(out.url, '/api/v1/namespaces')
      assert.equal(out.headers.authorization, 'Bearer agent-sa-token')
      assert.match(out.headers['user-agent'], /kubectl/)
    })

    test('kubectl get --raw with an issued caller token (the KubeFed form)', async (t) => {
      const kc = tempFile(t, 'kc', await issueKubeconfig(tower.registry, { cluster: 'prod-eu', token: true }))
      const out = JSON.parse(await kubectl(['--kubeconfig', kc, 'get', '--raw', '/api/v1/pods']))
      assert.equal(out.url, '/api/v1/pods')
      assert.equal(out.headers.authorization, 'Bearer agent-sa-token', 'the caller token must not reach the member')
    })

    test('kubectl streams a chunked watch as it happens', async (t) => {
      const kc = tempFile(t, 'kc', await issueKubeconfig(tower.registry, { cluster: 'prod-eu' }))
      const out = await kubectl(['--kubeconfig', kc, 'get', '--raw', '/watch?n=5&gapMs=30'])
      const names = out.trim().split('\n').map((l) => JSON.parse(l).object.metadata.name)
      assert.deepEqual(names, ['cm-0', 'cm-1', 'cm-2', 'cm-3', 'cm-4'])
      // Incremental delivery: the first event must arrive long before the last is sent.
      const req = https.request({ ...tlsOptions(tower.registry, port, callerCert(tower.registry, 'prod-eu')), path: '/watch?n=2&gapMs=1500' })
      req.end()
      const started = performance.now()
      const [res] = await once(req, 'response') as [IncomingMessage]
      const [first] = await once(res, 'data') as [Buffer]
      assert.ok(performance.now() - started < 1200, 'first watch event was held back')
      assert.match(first.toString(), /cm-0/)
      res.destroy()
    })

    test('WebSocket upgrade (v5.channel.k8s.io style) echoes through the tunnel', async () => {
      const cert = callerCert(tower.registry, 'prod-eu')
      const ws = new WebSocket(`wss://127.0.0.1:${port}/api/v1/namespaces/default/pods/p/exec?command=cat`, ['v5.channel.k8s.io'], { ca: tower.registry.ca.certPem, cert: cert.certPem, key: cert.keyPem })
      await once(ws, 'open')
      ws.send(Buffer.from('\x00hello'))
      const [msg] = await once(ws, 'message') as [Buffer]
      assert.equal(msg.toString(), '\x00hello')
      ws.close()
      await once(ws, 'close')
      assert.equal(up.requests.at(-1)?.headers['impersonate-user'], undefined)
    })

    test('POST Upgrade: SPDY/3.1 relays raw bytes both ways with half-close', async () => {
      const cert = callerCert(tower.registry, 'prod-eu')
      const socket = tls.connect({ host: '127.0.0.1', port, ca: tower.registry.ca.certPem, cert: cert.certPem, key: cert.keyPem, allowHalfOpen: true } as tls.ConnectionOptions)
      await once(socket, 'secureConnect')
      socket.write('POST /api/v1/namespaces/default/pods/p/exec?command=cat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n')
      let received = Buffer.alloc(0)
      socket.on('data', (d: Buffer) => { received = Buffer.concat([received, d]) })
      while (!received.includes('\r\n\r\n')) await once(socket, 'data')
      const headEnd = received.indexOf('\r\n\r\n') + 4
      assert.match(received.subarray(0, headEnd).toString(), /^HTTP\/1.1 101 /)
      assert.match(received.subarray(0, headEnd).toString(), /X-Stream-Protocol-Version: v4.channel.k8s.io/i)
      const payload = Buffer.alloc(3 * 1024 * 1024, 7)
      socket.end(payload)
      await once(socket, 'end')
      assert.equal(received.length - headEnd, payload.length, 'echo must be complete after our FIN (half-close)')
      socket.destroy()
    })

    test('a 100 MB response arrives whole, and a stalled reader holds back the upstream', async () => {
      const total = 100 * 1024 * 1024
      const before = up.bytesSent()
      const req = https.request({ ...tlsOptions(tower.registry, port, callerCert(tower.registry, 'prod-eu')), path: `/bytes?n=${total}` })
      req.end()
      const [res] = await once(req, 'response') as [IncomingMessage]
      let got = 0
      res.pause()
      // Stall for a while: everything the upstream could write must fit in bounded buffers. Loopback
      // TCP autotuning alone may hold tens of MB across the three connections (tcp_rmem's maximum is
      // 32 MiB here; 13-28 MB were seen), so the proof is twofold: well under the whole body went out,
      // and the upstream has stopped writing (without backpressure it writes the 100 MB in well under
      // the stall).
      await new Promise((resolve) => setTimeout(resolve, 1500))
      const inFlight = up.bytesSent() - before
      assert.ok(inFlight < total / 2, `upstream wrote ${inFlight} bytes to a stalled reader`)
      await new Promise((resolve) => setTimeout(resolve, 500))
      const more = up.bytesSent() - before - inFlight
      assert.ok(more < 2 * 1024 * 1024, `upstream kept writing to a stalled reader: ${more} bytes more in 500 ms`)
      res.on('data', (c: Buffer) => { got += c.length })
      res.resume()
      await once(res, 'end')
      assert.equal(got, total)
    })

    test('a client abort releases the upstream request within a second', async () => {
      const released = up.hangReleased()
      const req = https.request({ ...tlsOptions(tower.registry, port, callerCert(tower.registry, 'prod-eu')), path: '/hang' })
      req.on('error', () => {})
      req.end()
      while (!up.requests.some((r) => r.url === '/hang')) await new Promise((resolve) => setImmediate(resolve))
      const abortedAt = performance.now()
      req.destroy()
      const at = await released
      assert.ok(at - abortedAt < 1000, `upstream released after ${Math.round(at - abortedAt)} ms`)
    })

    test('a caller that hangs up on a watch is routine: no warning, no reset logged as a fault', async () => {
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        const req = https.request({ ...tlsOptions(tower.registry, port, callerCert(tower.registry, 'prod-eu')), path: '/watch?n=1000&gapMs=20' }, resolve)
        req.on('error', reject)
        req.end()
      })
      await once(res, 'data')
      res.destroy()
      // the server notices the hang-up and frees the stream to the agent
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.deepEqual(tower.logs.find(/response interrupted/), [])
      assert.ok(tower.logs.find(/caller went away/).length >= 1, 'the hang-up is logged at debug')
    })

    test('callers without a valid credential get 401 and nothing is forwarded', async () => {
      const count = up.requests.length
      const none = await get(tlsOptions(tower.registry, port), '/api')
      assert.equal(none.status, 401)
      assert.match(JSON.parse(none.body).message, /no client certificate/)
      // A certificate with the right names from a different CA.
      const otherCa = createCa({ commonName: 'tower-ca', validityDays: 1 })
      const forged = issueClientCert(otherCa, { user: 'alice', groups: ['system:masters'], cluster: 'prod-eu', validityDays: 1 })
      assert.equal((await get(tlsOptions(tower.registry, port, forged), '/api')).status, 401)
      // A valid certificate issued for another cluster.
      assert.equal((await get(tlsOptions(tower.registry, port, callerCert(tower.registry, 'other')), '/api')).status, 401)
      // Tokens: the agent's join token and garbage.
      assert.equal((await get(tlsOptions(tower.registry, port), '/api', { authorization: 'Bearer tower-agent_nope' })).status, 401)
      assert.equal(up.requests.length, count, 'a refused request reached the upstream')
      assert.ok(tower.logs.find('caller refused').length >= 4)
    })

    test('a caller token of another cluster is refused', async () => {
      const other = await addCluster(tower, 'staging')
      assert.ok(other.port > 0)
      const { token } = await tower.registry.issueCallerToken('staging', { user: 'bob', groups: [] })
      assert.equal((await get(tlsOptions(tower.registry, port), '/api', { authorization: `Bearer ${token}` })).status, 401)
      // Valid on its own cluster, which has no agent: 503 within the offline grace, 502 after it (a loaded machine gets there).
      const status = (await get(tlsOptions(tower.registry, other.port), '/echo', { authorization: `Bearer ${token}` })).status
      assert.ok(status === 503 || status === 502, `valid on its own cluster (no agent there): ${status}`)
    })

    test('smuggled Authorization and Impersonate-* headers are removed', async () => {
      const r = await get(tlsOptions(tower.registry, port, callerCert(tower.registry, 'prod-eu')), '/echo', {
        authorization: 'Bearer stolen', 'impersonate-user': 'system:admin', 'impersonate-group': 'system:masters', 'impersonate-extra-scopes': 'x'
      })
      const seen = JSON.parse(r.body).headers
      assert.equal(seen.authorization, 'Bearer agent-sa-token')
      assert.equal(seen['impersonate-user'], undefined)
      assert.equal(seen['impersonate-group'], undefined)
      assert.equal(seen['impersonate-extra-scopes'], undefined)
    })

    test('callers that hang up before the TLS handshake are released, not left in CLOSE_WAIT', async () => {
      for (let i = 0; i < 20; i++) {
        const sock = net.connect(port, '127.0.0.1')
        await once(sock, 'connect')
        sock.destroy()
        await once(sock, 'close')
      }
      const closeWait = (): number => execFileSync('ss', ['-tanH', 'state', 'close-wait', `( sport = :${port} )`]).toString().split('\n').filter((l) => l.trim() !== '').length
      const deadline = Date.now() + 5000
      while (closeWait() > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
      assert.equal(closeWait(), 0)
    })

    test('oversized request headers get 431', async () => {
      const r = await get(tlsOptions(tower.registry, port, callerCert(tower.registry, 'prod-eu')), '/echo', { 'x-big': 'a'.repeat(40 * 1024) })
      assert.equal(r.status, 431)
      assert.ok(tower.logs.find(/431/).length > 0)
    })

    test('the agent announced hop frames as configured, and the server uses them', () => {
      const connected = tower.logs.find('agent connected')
      assert.equal(connected.at(-1)?.hopFrames, hopFrames)
    })

    test('an h2 caller: requests relayed with the agent credential, a watch streamed as it happens, RST_STREAM releases the upstream', async () => {
      const cert = callerCert(tower.registry, 'prod-eu')
      const session = http2.connect(`https://127.0.0.1:${port}`, { ca: tower.registry.ca.certPem, cert: cert.certPem, key: cert.keyPem })
      session.on('error', () => {})
      try {
        const h2get = async (path: string): Promise<{ status: number, body: string }> => {
          const s = session.request({ ':path': path }, { endStream: true })
          const [headers] = await once(s, 'response') as [http2.IncomingHttpHeaders]
          let body = ''
          s.setEncoding('utf8')
          for await (const c of s) body += c as string
          return { status: Number(headers[':status']), body }
        }
        const results = await Promise.all([h2get('/echo?a=1'), h2get('/echo?a=2'), h2get('/api/v1/pods')])
        for (const r of results) {
          assert.equal(r.status, 200)
          assert.equal(JSON.parse(r.body).headers.authorization, 'Bearer agent-sa-token')
        }
        assert.deepEqual(results.map((r) => JSON.parse(r.body).url), ['/echo?a=1', '/echo?a=2', '/api/v1/pods'])
        const watch = session.request({ ':path': '/watch?n=2&gapMs=1500' }, { endStream: true })
        const started = performance.now()
        const [first] = await once(watch, 'data') as [Buffer]
        assert.ok(performance.now() - started < 1200, 'first watch event was held back')
        assert.match(first.toString(), /cm-0/)
        watch.close(http2.constants.NGHTTP2_CANCEL)
        const released = up.hangReleased()
        const hang = session.request({ ':path': '/hang' }, { endStream: true })
        hang.on('error', () => {})
        while (!up.requests.some((r) => r.url === '/hang')) await new Promise((resolve) => setImmediate(resolve))
        const cancelledAt = performance.now()
        hang.close(http2.constants.NGHTTP2_CANCEL)
        const at = await released
        assert.ok(at - cancelledAt < 1000, `upstream released after ${Math.round(at - cancelledAt)} ms`)
      } finally {
        session.destroy()
      }
    })
  })
}

describe('impersonation', () => {
  test('the caller certificate identity reaches the member as Impersonate-User/Group', async (t) => {
    const up = await startUpstream()
    const tower = await startTower()
    const c = await addCluster(tower, 'imp', { impersonate: true })
    const agent = await startAgent(tower, 'imp', c.token, up)
    t.after(async () => { await agent.stop(); await tower.stop(); await up.close() })
    const cert = callerCert(tower.registry, 'imp', 'carol', ['team-a', 'team-b'])
    const seen = JSON.parse((await get(tlsOptions(tower.registry, c.port, cert), '/echo', { 'impersonate-user': 'system:admin' })).body).headers
    assert.equal(seen['impersonate-user'], 'carol')
    assert.equal(seen['impersonate-group'], 'team-a, team-b')
    const { token } = await tower.registry.issueCallerToken('imp', { user: 'kubefed', groups: ['fed'] })
    const viaToken = JSON.parse((await get(tlsOptions(tower.registry, c.port), '/echo', { authorization: `Bearer ${token}` })).body).headers
    assert.equal(viaToken['impersonate-user'], 'kubefed')
  })
})
