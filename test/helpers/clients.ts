/**
 * Clients for the tunnel tests: the real kubectl, and node https requests
 * presenting a Tower-issued client certificate.
 */
import { execFile } from 'node:child_process'
import https from 'node:https'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import { issueClientCert, type CertificateBundle } from '@tower/pki'
import type { FileRegistry } from '@tower/server'

/** Runs /usr/bin/kubectl; resolves with stdout, rejects with stderr on a non-zero exit. */
export function kubectl (args: string[], opts: { env?: NodeJS.ProcessEnv, timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('/usr/bin/kubectl', args, { env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err !== null) reject(Object.assign(new Error(`kubectl ${args.join(' ')} failed: ${stderr || err.message}`), { stderr, stdout }))
      else resolve(stdout)
    })
  })
}

/** A client certificate for `cluster`, issued by the registry's CA. */
export function callerCert (registry: FileRegistry, cluster: string, user = 'alice', groups: string[] = ['devs']): CertificateBundle {
  return issueClientCert(registry.ca, { user, groups, cluster, clusterUid: registry.find(cluster)?.uid, validityDays: 1 })
}

/** Options for https.request to a cluster port. */
export function tlsOptions (registry: FileRegistry, port: number, cert?: CertificateBundle): https.RequestOptions {
  return { host: '127.0.0.1', port, ca: registry.ca.certPem, cert: cert?.certPem, key: cert?.keyPem, agent: false }
}

/** GET and read the whole body. */
export async function get (opts: https.RequestOptions, path: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string, res: IncomingMessage }> {
  const req = https.request({ ...opts, path, headers })
  req.end()
  const [res] = await once(req, 'response') as [IncomingMessage]
  const chunks: Buffer[] = []
  for await (const c of res) chunks.push(c)
  return { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), res }
}
