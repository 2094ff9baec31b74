/**
 * What Node itself charges, in server RSS, for one idle HTTPS connection
 * holding a response open (a watch), with and without a client certificate
 * (mTLS). It explains `bytes_per_idle_stream`: Tower's cluster ports
 * authenticate callers by certificate, and the plain `direct` and `l7-chain`
 * rows do not. Not part of `npm run bench`; run it alone:
 *
 *   node bench/tls-idle-cost.ts [connections]   (default 5,000)
 *
 * For each mode, a fresh server process (node:https, the bench CA, a
 * response head and one body byte per request, never ended) and a client
 * process that opens the connections 200 at a time and waits for each
 * byte. Server RSS is read before the client starts and 2 s after the last
 * connection got its byte, without forcing a GC, as the bench's idle section does.
 */
import https from 'node:https'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { writeBenchPki } from './lib/pki.ts'
import { rssBytes } from './lib/proc.ts'

const SELF = fileURLToPath(import.meta.url)
const [role, ...args] = process.argv.slice(2)

if (role === 'client') {
  const [port, n, certFile, keyFile, caFile, mtls] = args as [string, string, string, string, string, string]
  const agent = new https.Agent({
    keepAlive: false,
    maxSockets: Infinity,
    ca: readFileSync(caFile),
    ...(mtls === '1' ? { cert: readFileSync(certFile), key: readFileSync(keyFile) } : {})
  })
  let open = 0
  const one = async (): Promise<void> => await new Promise<void>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port: Number(port), path: '/watch', agent, servername: 'localhost' }, (res) => {
      res.once('data', () => { open++; resolve() })
    }).once('error', reject)
  })
  const total = Number(n)
  for (let i = 0; i < total; i += 200) await Promise.all(Array.from({ length: Math.min(200, total - i) }, one))
  process.send!({ open })
  setInterval(() => {}, 60_000)
} else if (role === 'server') {
  const [n, dir, mtls] = args as [string, string, string]
  const pki = writeBenchPki(dir)
  const requestCert = mtls === '1'
  const server = https.createServer({ cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile), ca: readFileSync(pki.caFile), requestCert, rejectUnauthorized: requestCert }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.write('{')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  await new Promise((resolve) => setTimeout(resolve, 500))
  const before = rssBytes(process.pid)
  const port = (server.address() as { port: number }).port
  const client = fork(SELF, ['client', String(port), n, pki.certFile, pki.keyFile, pki.caFile, mtls])
  const [{ open }] = await once(client, 'message') as [{ open: number }]
  await new Promise((resolve) => setTimeout(resolve, 2000))
  const after = rssBytes(process.pid)
  client.kill()
  process.send!({ open, bytesPerConnection: (after - before) / open })
  process.exit(0)
} else {
  const n = role ?? '5000'
  for (const mtls of ['0', '1']) {
    const child = fork(SELF, ['server', n, mkdtempSync(join(os.tmpdir(), 'tower-tls-idle-')), mtls])
    const [r] = await once(child, 'message') as [{ open: number, bytesPerConnection: number }]
    console.log(`${mtls === '1' ? 'with a client certificate   ' : 'without a client certificate'}: ${r.open} connections, ${Math.round(r.bytesPerConnection)} B of server RSS each`)
  }
}
