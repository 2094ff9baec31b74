/**
 * A backend whose serving certificate names its clusters (the kubernetes
 * one adds mc-<name>.<ns>.svc for each) gets the grown certificate loaded
 * into the running listeners on the registry's `change`, not only at the
 * periodic check, so a kubeconfig for a new cluster verifies at once.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import tls from 'node:tls'
import { once } from 'node:events'
import type { CertificateBundle } from '@tower/pki'
import { FileRegistry, issueServingCertificate, servingHosts, TowerServer, type ClusterRegistry } from '@tower/server'
import { sinkLogger, tmpStateDir } from './helpers.ts'

/** A FileRegistry whose serving certificate also names mc-<cluster>.tower-system.svc for every cluster, re-issued when that set grows. */
function growingSans (inner: FileRegistry): ClusterRegistry {
  let issued: { key: string, cert: CertificateBundle } | undefined
  const serverCertificate = (): CertificateBundle => {
    const hosts = servingHosts(inner.settings, inner.clusters().map((c) => `mc-${c.name}.tower-system.svc`))
    const key = hosts.join(',')
    if (issued?.key !== key) issued = { key, cert: issueServingCertificate(inner.ca, { hosts, validityDays: 1 }) }
    return issued.cert
  }
  return new Proxy(inner, {
    get (target, prop) {
      if (prop === 'serverCertificate') return serverCertificate
      const v = Reflect.get(target, prop, target)
      return typeof v === 'function' ? v.bind(target) : v
    }
  }) as unknown as ClusterRegistry
}

async function verifies (port: number, servername: string, caPem: string): Promise<boolean> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername, ca: caPem })
  try {
    await Promise.race([once(socket, 'secureConnect'), once(socket, 'error').then(([err]) => { throw err })])
    return true
  } catch (err) {
    assert.equal((err as { code?: string }).code, 'ERR_TLS_CERT_ALTNAME_INVALID', 'fails only on the name')
    return false
  } finally {
    socket.destroy()
  }
}

test('a certificate that grows with the clusters is loaded into the agent endpoint and the cluster ports on change', async (t) => {
  const { logger } = sinkLogger()
  const file = await FileRegistry.open({ stateDir: tmpStateDir(t), server: { advertiseHost: '127.0.0.1', portRange: '0' }, logger })
  const registry = growingSans(file)
  // The periodic check is an hour away: only `change` can load the new certificate in time.
  const server = new TowerServer(registry, { listenHost: '127.0.0.1', listenPort: 0, clusterHost: '127.0.0.1', drainTimeoutMs: 200, certCheckIntervalMs: 3_600_000, logger })
  await server.start()
  t.after(async () => { await server.stop() })
  const caPem = registry.ca.certPem

  await registry.add('first')
  await server.synced()
  const firstPort = server.clusterPort('first')!
  assert.equal(await verifies(server.agentPort, 'mc-first.tower-system.svc', caPem), true, 'the agent endpoint names the first cluster')
  assert.equal(await verifies(server.agentPort, 'mc-second.tower-system.svc', caPem), false, 'not yet the second')

  await registry.add('second')
  await server.synced()
  assert.equal(await verifies(server.agentPort, 'mc-second.tower-system.svc', caPem), true, 'the agent endpoint names the new cluster')
  assert.equal(await verifies(firstPort, 'mc-second.tower-system.svc', caPem), true, 'so does an existing cluster port')
  assert.equal(await verifies(server.clusterPort('second')!, 'mc-second.tower-system.svc', caPem), true, 'and the new cluster port')
})
