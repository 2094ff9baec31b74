/**
 * Issue 8 item 21: client certificates are bound to one registration of a
 * cluster (its uid), and single certificates can be revoked by serial.
 */
import { mock, test } from 'node:test'
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import fs from 'node:fs'
import type { IncomingMessage } from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { issueClientCert } from '@tower/pki'
import { authenticateCaller } from '../src/caller-auth.ts'
import { issueKubeconfigCredential } from '../src/kubeconfig.ts'
import { FileRegistry } from '../src/registry/file-registry.ts'
import type { ClusterRegistry } from '../src/registry/api.ts'

function tmpDir (t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-caller-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return path.join(dir, 'state')
}

/** A request as a TLS server hands it over once the handshake verified the certificate against the CA. */
function requestWith (certPem: string): IncomingMessage {
  const x509 = new X509Certificate(certPem)
  return { headers: {}, socket: { authorized: true, getPeerX509Certificate: () => x509 } } as unknown as IncomingMessage
}

function kubeconfigCert (yaml: string): string {
  const m = /client-certificate-data: (\S+)/.exec(yaml)
  assert.ok(m !== null)
  return Buffer.from(m[1]!, 'base64').toString('utf8')
}

test('item 21: a revoked serial is refused while other certificates still work; a re-added cluster refuses every certificate issued before', async (t) => {
  const reg = await FileRegistry.open({ stateDir: tmpDir(t), server: { portRange: '7300-7310' } })
  await reg.add('a')
  const one = await issueKubeconfigCredential(reg, { cluster: 'a', user: 'alice' })
  const two = await issueKubeconfigCredential(reg, { cluster: 'a', user: 'bob' })
  assert.match(one.serial ?? '', /^[0-9a-f]+$/)
  const pemOne = kubeconfigCert(one.yaml)
  const pemTwo = kubeconfigCert(two.yaml)
  assert.equal((authenticateCaller(requestWith(pemOne), 'a', reg as unknown as ClusterRegistry) as any).user, 'alice')

  assert.equal(await reg.revokeCertificate('a', new X509Certificate(pemOne).serialNumber), true)
  assert.equal(await reg.revokeCertificate('a', one.serial!), false, 'the same serial, normalised, is already there')
  assert.match((authenticateCaller(requestWith(pemOne), 'a', reg as unknown as ClusterRegistry) as any).reason, /revoked/)
  assert.equal((authenticateCaller(requestWith(pemTwo), 'a', reg as unknown as ClusterRegistry) as any).user, 'bob')
  await assert.rejects(async () => await reg.revokeCertificate('a', 'not-hex'), { code: 'TOWER_ERR_INVALID_ARG' })

  // A certificate without a uid (as issued before uids, or by tooling with the CA key) cannot be tied to this registration.
  const late = issueClientCert(reg.ca, { user: 'carol', groups: [], cluster: 'a', validityDays: 1 })
  assert.match((authenticateCaller(requestWith(late.certPem), 'a', reg as unknown as ClusterRegistry) as any).reason, /no cluster uid/)

  // The cluster is removed and re-added a minute later.
  mock.timers.enable({ apis: ['Date'], now: Date.now() + 60_000 })
  try {
    await reg.remove('a')
    await reg.add('a')
    assert.match((authenticateCaller(requestWith(pemTwo), 'a', reg as unknown as ClusterRegistry) as any).reason, /earlier registration/)
  } finally {
    mock.timers.reset()
  }
  const three = kubeconfigCert((await issueKubeconfigCredential(reg, { cluster: 'a', user: 'dave' })).yaml)
  assert.equal((authenticateCaller(requestWith(three), 'a', reg as unknown as ClusterRegistry) as any).user, 'dave')
  assert.match((authenticateCaller(requestWith(three), 'b', reg as unknown as ClusterRegistry) as any).reason, /issued for cluster "a"/)
})
