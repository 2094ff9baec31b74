/**
 * The mux conformance suite (packages/mux/test/suites/) over the production
 * carrier: Tower's own RFC 6455 framing, `wsStream`, after Tower's own opening
 * handshake, on real sockets on 127.0.0.1. The mux package runs the same
 * suites over an in-memory pair, TCP and the `ws` library; it cannot run them
 * over wsStream itself, because mux may not import transport.
 *
 * Two carriers, both in the roles they have in production: the end that
 * accepted the WebSocket (the Tower server) is the session client, which
 * opens streams; the end that dialled (the agent) is the session server.
 * - plain TCP (`ws:`), the dialler masking every frame with a random key;
 * - TLS (`wss:`), the dialler masking with the all-zero key, as the agent does
 *   inside TLS (see wsStream's `randomMask`).
 */
import { once } from 'node:events'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { TestContext } from 'node:test'
import { createCa, issueServerCert } from '@tower/pki'
import { acceptUpgrade, requestUpgrade, SUBPROTOCOL, upgradeProblem, wsStream } from '@tower/transport'
import type { Transport } from '../packages/mux/test/helpers.ts'
import { dataSuite } from '../packages/mux/test/suites/data.ts'
import { httpSuite } from '../packages/mux/test/suites/http.ts'
import { keepaliveSuite } from '../packages/mux/test/suites/keepalive.ts'
import { lifecycleSuite } from '../packages/mux/test/suites/lifecycle.ts'
import { malformedSuite } from '../packages/mux/test/suites/malformed.ts'

/** One certificate for the whole file: issuing an RSA key with node-forge takes a while. */
let tlsMaterial: { ca: string, cert: string, key: string } | undefined
function tls (): { ca: string, cert: string, key: string } {
  if (tlsMaterial === undefined) {
    const ca = createCa({ commonName: 'mux-over-wsstream-ca', validityDays: 2 })
    const cert = issueServerCert(ca, { commonName: 'tower', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityDays: 2 })
    tlsMaterial = { ca: ca.certPem, cert: cert.certPem, key: cert.keyPem }
  }
  return tlsMaterial
}

/**
 * A WebSocket connection between an http(s) server and requestUpgrade, each
 * end wrapped in wsStream: [accepting end, dialling end].
 */
async function wsStreamPair (t: TestContext, secure: boolean): Promise<[Duplex, Duplex]> {
  const server = secure
    ? https.createServer({ cert: tls().cert, key: tls().key })
    : http.createServer()
  const sockets = new Set<Socket>()
  server.on('connection', (s: Socket) => { sockets.add(s) })
  server.on('secureConnection', (s: Socket) => { sockets.add(s) })
  const accepted = new Promise<Duplex>((resolve, reject) => {
    server.once('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
      const problem = upgradeProblem(req)
      if (problem !== undefined) {
        socket.destroy()
        reject(new Error(`test handshake refused: ${problem}`))
        return
      }
      acceptUpgrade(req, socket, SUBPROTOCOL)
      resolve(wsStream(socket, { role: 'server', head }))
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  const url = new URL(`${secure ? 'wss' : 'ws'}://127.0.0.1:${port}/`)
  const pending = requestUpgrade({ url, protocol: SUBPROTOCOL, timeoutMs: 10_000, ...(secure ? { ca: tls().ca } : {}) })
  const [acceptingEnd, { socket, head }] = await Promise.all([accepted, pending.done])
  sockets.add(socket)
  const diallingEnd = wsStream(socket, { role: 'client', head, randomMask: !secure })
  t.after(() => {
    acceptingEnd.destroy()
    diallingEnd.destroy()
    // wsStream leaves a socket with a Close in flight a moment to flush; a
    // test that is over (or a mocked clock) must not keep it.
    for (const s of sockets) s.destroy()
    server.close()
  })
  return [acceptingEnd, diallingEnd]
}

const carriers: Transport[] = [
  { name: 'wsStream on TCP, random mask', pair: async (t) => await wsStreamPair(t, false) },
  { name: 'wsStream on TLS, zero mask', pair: async (t) => await wsStreamPair(t, true) }
]

for (const carrier of carriers) {
  dataSuite(carrier)
  lifecycleSuite(carrier)
  keepaliveSuite(carrier)
  httpSuite(carrier)
  malformedSuite(carrier)
}
