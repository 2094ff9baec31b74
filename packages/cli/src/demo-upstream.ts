/**
 * A tiny HTTPS service for `tower demo` on a machine with no cluster: it
 * answers /version like a kube-apiserver and echoes anything else, so the
 * demo shows a request crossing the tunnel without needing Kubernetes.
 */
import https from 'node:https'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { createCa, issueServerCert } from '@tower/pki'

/** Starts the service on 127.0.0.1; returns its URL, CA and a stop function. */
export async function startDemoUpstream (): Promise<{ url: string, caPem: string, close: () => void }> {
  const ca = createCa({ commonName: 'tower-demo-upstream-ca', validityDays: 1 })
  const cert = issueServerCert(ca, { commonName: 'demo-upstream', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityDays: 1 })
  const server = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    const body = req.url === '/version'
      ? { major: '1', minor: '0', gitVersion: 'tower-demo-upstream', platform: process.platform }
      : { message: 'hello through the Tower tunnel', method: req.method, path: req.url, impersonateUser: req.headers['impersonate-user'] ?? null }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body, null, 2) + '\n')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, caPem: ca.certPem, close: () => server.close() }
}
