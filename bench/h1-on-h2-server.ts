/**
 * Does serving HTTP/1.1 from node:http2's server (`allowHTTP1`) cost
 * HTTP/1.1 callers anything against the https.Server proxy-mode ports used
 * before h2? Not part of `npm run bench`; run it alone:
 *
 *   node --experimental-strip-types bench/h1-on-h2-server.ts [requests] [concurrency]
 *
 * Same certificate, same trivial handler (a /version-sized body), a
 * keep-alive HTTP/1.1 client with `concurrency` sockets; median of 3 runs
 * after a warm-up, the two servers alternating.
 */
import https from 'node:https'
import http2 from 'node:http2'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createCa, issueServerCert } from '@tower/pki'

const REQUESTS = Number(process.argv[2] ?? 20_000)
const CONCURRENCY = Number(process.argv[3] ?? 16)
const BODY = JSON.stringify({ major: '1', minor: '36', gitVersion: 'v1.36.3', gitCommit: 'a'.repeat(40), platform: 'linux/amd64' })

const ca = createCa({ commonName: 'bench-ca', validityDays: 1 })
const cert = issueServerCert(ca, { commonName: 'bench', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityDays: 1 })
const handler = (_req: IncomingMessage, res: ServerResponse): void => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY) })
  res.end(BODY)
}

async function start (kind: 'https' | 'http2'): Promise<{ port: number, close: () => void }> {
  const opts = { cert: cert.certPem, key: cert.keyPem }
  const server = kind === 'https'
    ? https.createServer({ ...opts, ALPNProtocols: ['http/1.1'] }, handler)
    : http2.createSecureServer({ ...opts, allowHTTP1: true }, handler as never)
  if (kind === 'http2') Object.assign(server, { keepAliveTimeout: 65_000 })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { port: (server.address() as AddressInfo).port, close: () => server.close() }
}

async function run (port: number): Promise<number> {
  const agent = new https.Agent({ keepAlive: true, maxSockets: CONCURRENCY, ca: ca.certPem, servername: 'localhost' })
  let next = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < REQUESTS) {
      next++
      await new Promise<void>((resolve, reject) => {
        const req = https.get({ host: '127.0.0.1', port, path: '/version', agent }, (res) => {
          res.resume()
          res.on('end', resolve)
        })
        req.on('error', reject)
      })
    }
  }))
  agent.destroy()
  return REQUESTS / ((performance.now() - started) / 1000)
}

const servers = { https: await start('https'), http2: await start('http2') }
const results: Record<string, number[]> = { https: [], http2: [] }
for (const s of Object.values(servers)) await run(s.port)
for (let i = 0; i < 3; i++) {
  for (const [name, s] of Object.entries(servers)) results[name]!.push(await run(s.port))
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[1]!
const h1 = median(results.https!)
const h2 = median(results.http2!)
console.log(JSON.stringify({ requests: REQUESTS, concurrency: CONCURRENCY, rps: { httpsServer: Math.round(h1), http2ServerAllowHttp1: Math.round(h2) }, runs: results }))
console.log(`HTTP/1.1 callers on the h2 server: x${(h2 / h1).toFixed(3)} of https.Server`)
for (const s of Object.values(servers)) s.close()
