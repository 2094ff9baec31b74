/**
 * Test rig for ProxyHandler alone: an HTTPS cluster port on 127.0.0.1 wired
 * like a proxy-mode ClusterListener, in front of a stand-in registry and
 * tunnel pool that the test controls (which caller tokens are valid, whether
 * the cluster is still registered, what picking an agent throws), and a
 * pino logger writing into a sink the test reads.
 */
import https from 'node:https'
import http from 'node:http'
import tls from 'node:tls'
import { once } from 'node:events'
import { duplexPair, type Duplex } from 'node:stream'
import type { AddressInfo, Socket } from 'node:net'
import { pino } from 'pino'
import { Session } from '@tower/mux'
import { createCa, issueServerCert } from '@tower/pki'
import { encodePreamble, readPreamble, sessionOptions, type StreamKind } from '@tower/transport'
import { hopAgentPair, type AgentStream } from './hop-agent.ts'
import type { HopMessage } from '@tower/transport'
import { ProxyHandler } from '../src/proxy-handler.ts'
import type { FileRegistry } from '../src/registry/file-registry.ts'
import type { ClusterRegistry } from '../src/registry/api.ts'
import type { AgentTunnel, TunnelPool } from '../src/tunnels.ts'
import type { CallerLimits } from '../src/config.ts'
import { LogSink } from './helpers.ts'

type After = { after: (fn: () => unknown) => void }

/** The caller token the stand-in registry accepts. */
export const CALLER_TOKEN = 'tower-caller-test-token'
export const CLUSTER = 'c1'

/** What the test controls. */
export interface ProxyRigState {
  /** False once the cluster "left the registry". */
  registered: boolean
  /** Thrown by `pick`/`open` when set; otherwise the fake agent (if any) is used. */
  pickError: Error | undefined
}

export interface ProxyRig {
  port: number
  caPem: string
  state: ProxyRigState
  logs: LogSink
  handler: ProxyHandler
  /** Server-side sockets of the cluster port still open. */
  open: Set<Socket>
  /** Each socket handed to the `upgrade` listener, with its allowHalfOpen right after the handler returned. */
  upgrades: Array<{ socket: Duplex, halfOpenAfterHandler: boolean }>
  /** Attaches an in-memory agent whose internal HTTP server is `agentHttp`. */
  attachAgent: (agentHttp: http.Server) => void
  /** Attaches an in-memory agent that announced hop frames; `onMessage` answers (hop-agent.ts). Returns its streams. */
  attachHopAgent: (onMessage: (s: AgentStream, m: HopMessage) => void) => AgentStream[]
}

export async function proxyRig (t: After, opts: { limits?: Partial<CallerLimits>, level?: string } = {}): Promise<ProxyRig> {
  const ca = createCa({ commonName: 'test-ca', validityDays: 2 })
  const cert = issueServerCert(ca, { commonName: 'tower-server', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityDays: 2 })
  const logs = new LogSink()
  const logger = pino({ level: opts.level ?? 'debug' }, logs)
  const state: ProxyRigState = { registered: true, pickError: undefined }
  let agent: AgentTunnel | undefined
  let seq = 0

  const registry = {
    verifyCallerToken: (cluster: string, token: string) => cluster === CLUSTER && token === CALLER_TOKEN ? { user: 'alice', groups: ['dev'] } : undefined,
    find: (name: string) => state.registered && name === CLUSTER ? { name, mode: 'proxy', port: 0, impersonate: true } : undefined,
    get: (name: string) => {
      if (!state.registered || name !== CLUSTER) throw Object.assign(new Error(`unknown cluster "${name}"`), { code: 'TOWER_ERR_UNKNOWN_CLUSTER' })
      return { name, mode: 'proxy', port: 0, impersonate: true }
    }
  } as unknown as FileRegistry
  const pick = (): AgentTunnel => {
    if (state.pickError !== undefined) throw state.pickError
    if (agent === undefined) throw Object.assign(new Error(`no agent connected for cluster "${CLUSTER}"`), { code: 'TOWER_ERR_NO_AGENT', offlineSince: Date.now() })
    return agent
  }
  const openOn = (tunnel: AgentTunnel, kind: StreamKind = 'http'): Duplex => {
    const stream = tunnel.session.open()
    stream.write(encodePreamble({ kind, id: (++seq).toString(36) }))
    return stream
  }
  const tunnels = { pick, openOn, open: () => openOn(pick()) } as unknown as TunnelPool

  const limits = { maxHeaderBytes: 32 * 1024, headersTimeoutMs: 30_000, keepAliveTimeoutMs: 65_000, offlineGraceMs: 10_000, ...opts.limits } as CallerLimits
  const handler = new ProxyHandler({ cluster: CLUSTER, registry: registry as unknown as ClusterRegistry, tunnels, logger, limits })
  const upgrades: ProxyRig['upgrades'] = []
  const server = https.createServer({
    cert: cert.certPem,
    key: cert.keyPem,
    ca: ca.certPem,
    requestCert: true,
    rejectUnauthorized: false,
    ALPNProtocols: ['http/1.1']
  }, (req, res) => handler.handleRequest(req, res))
  server.on('upgrade', (req, socket: Duplex, head) => {
    handler.handleUpgrade(req, socket, head)
    upgrades.push({ socket, halfOpenAfterHandler: socket.allowHalfOpen })
  })
  server.requestTimeout = 0
  const open = new Set<Socket>()
  server.on('connection', (s: Socket) => {
    open.add(s)
    s.once('close', () => open.delete(s))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(async () => {
    handler.close()
    for (const s of open) s.destroy()
    agent?.session.destroy()
    await new Promise((resolve) => server.close(resolve))
  })

  return {
    port: (server.address() as AddressInfo).port,
    caPem: ca.certPem,
    state,
    logs,
    handler,
    open,
    upgrades,
    attachAgent (agentHttp: http.Server) {
      const [near, far] = duplexPair()
      const session = new Session(near, { ...sessionOptions(), client: true })
      const agentSide = new Session(far, { ...sessionOptions(), client: false })
      agentSide.on('stream', (stream: Duplex) => {
        stream.on('error', () => {})
        readPreamble(stream, 5000).then(() => agentHttp.emit('connection', stream), () => stream.destroy())
      })
      agent = { agentId: 'a1', remote: 'memory', since: Date.now(), session, credential: 'cred' } as unknown as AgentTunnel
    },
    attachHopAgent (onMessage) {
      const pair = hopAgentPair(onMessage)
      agent = { agentId: 'a1', remote: 'memory', since: Date.now(), session: pair.session, credential: 'cred', hopFrames: true } as unknown as AgentTunnel
      return pair.streams
    }
  }
}

/** A TLS connection to the rig's port. */
export async function connect (rig: ProxyRig): Promise<tls.TLSSocket> {
  const socket = tls.connect({ host: '127.0.0.1', port: rig.port, ca: rig.caPem, servername: 'localhost' })
  socket.on('error', () => {})
  await once(socket, 'secureConnect')
  return socket
}

/** Sends raw request bytes; resolves with everything received once the server closes the connection. */
export async function exchange (rig: ProxyRig, request: string): Promise<string> {
  const socket = await connect(rig)
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  const ended = new Promise<void>((resolve) => socket.once('end', () => resolve()))
  socket.write(request)
  await ended
  socket.destroy()
  return Buffer.concat(chunks).toString()
}

/** An https GET with node's client; resolves with status, headers and body. */
export async function get (rig: ProxyRig, path: string, headers: Record<string, string> = {}): Promise<{ status: number, headers: http.IncomingHttpHeaders, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port: rig.port, path, ca: rig.caPem, servername: 'localhost', headers, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('error', reject)
  })
}

/** The status code of a raw HTTP answer. */
export function statusOf (answer: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0)
}

/** The JSON body of a raw HTTP answer. */
export function bodyOf (answer: string): Record<string, unknown> {
  return JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>
}
