/**
 * The agent endpoint: where agents dial in. Every check happens on the HTTP
 * upgrade request, before the WebSocket handshake is accepted, so a rejected
 * agent costs one HTTP response and stores nothing:
 *
 *   path → websocket headers → subprotocol → admission rate → cluster header
 *   → token (constant time)
 *
 * Accepted connections become a yamux session (this side is the yamux client
 * and opens the streams) registered in the TunnelPool.
 */
import https from 'node:https'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { Session, type Logger } from '@tower/mux'
import { AGENT_PATH, HEADER_AGENT_ID, HEADER_CLUSTER, SUBPROTOCOL, acceptUpgrade, sessionOptions, upgradeProblem, wsStream } from '@tower/transport'
import type { Registry } from './registry.ts'
import type { TunnelPool } from './tunnels.ts'
import { bearerToken } from './tokens.ts'
import { AdmissionLimiter } from './admission.ts'
import type { AgentEndpointLimits } from './config.ts'

/** Options of {@link createAgentEndpoint}. */
export interface AgentEndpointOptions {
  registry: Registry
  tunnels: TunnelPool
  /** PEM certificate and key served to agents. */
  tls: { certPem: string, keyPem: string }
  limits: AgentEndpointLimits
  logger: Logger
}

const AGENT_ID_RE = /^[A-Za-z0-9._-]{1,64}$/

/** An HTTPS server (not yet listening) that accepts agents. Plain requests get 404 except GET /healthz. */
export function createAgentEndpoint (opts: AgentEndpointOptions): https.Server {
  const log = opts.logger.child({ component: 'agent-endpoint' })
  const admission = new AdmissionLimiter(opts.limits.acceptPerSecond, opts.limits.acceptBurst)
  const server = https.createServer({ cert: opts.tls.certPem, key: opts.tls.keyPem, maxHeaderSize: 16 * 1024 }, (req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n')
      return
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end(`tower agent endpoint: connect with a WebSocket to ${AGENT_PATH}\n`)
  })
  server.headersTimeout = opts.limits.handshakeTimeoutMs
  server.requestTimeout = opts.limits.handshakeTimeoutMs
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`
    const cluster = headerValue(req, HEADER_CLUSTER)
    const agentId = headerValue(req, HEADER_AGENT_ID) ?? 'unknown'
    const reject = (status: number, reason: string, extra: Record<string, string> = {}): void => {
      log.warn({ remote, cluster, agentId, status, reason }, 'agent rejected')
      refuse(socket, status, reason, extra)
    }
    socket.on('error', (err) => log.debug({ err, remote }, 'agent socket error before upgrade'))

    if (new URL(req.url ?? '/', 'https://x').pathname !== AGENT_PATH) return reject(404, `unknown path; agents connect to ${AGENT_PATH}`)
    const problem = upgradeProblem(req)
    if (problem !== undefined) return reject(400, `not a websocket handshake: ${problem}`)
    const protocols = (headerValue(req, 'sec-websocket-protocol') ?? '').split(',').map((s) => s.trim())
    if (!protocols.includes(SUBPROTOCOL)) return reject(400, `unsupported protocol; this server speaks ${SUBPROTOCOL}`)
    if (!admission.take()) {
      return reject(503, 'too many agents connecting; retry later', { 'retry-after': '1' })
    }
    if (cluster === undefined || !AGENT_ID_RE.test(agentId)) return reject(400, `missing ${HEADER_CLUSTER} header or malformed ${HEADER_AGENT_ID}`)
    const token = bearerToken(headerValue(req, 'authorization'))
    // Unknown cluster and wrong token get the same answer: no probing for names.
    if (token === undefined || !opts.registry.verifyAgentToken(cluster, token)) return reject(401, 'invalid agent token for this cluster')

    acceptUpgrade(req, socket, SUBPROTOCOL)
    const transport = wsStream(socket as Socket, { role: 'server', head })
    const session = new Session(transport, { ...sessionOptions({ maxStreams: opts.limits.maxStreamsPerAgent }), client: true, logger: opts.logger.child({ component: 'session', cluster, agentId }) })
    const since = Date.now()
    opts.tunnels.add(cluster, { agentId, remote, since, session })
    log.info({ cluster, agentId, remote, agents: opts.tunnels.count(cluster) }, 'agent connected')
    // The session ends the transport itself (Close frame, then TCP), with a
    // grace timer for a peer that never answers.
    session.once('close', (err?: Error) => {
      const fields = { cluster, agentId, remote, connectedMs: Date.now() - since, agents: opts.tunnels.count(cluster) }
      if (err === undefined) log.info(fields, 'agent disconnected')
      else log.warn({ ...fields, err }, 'agent disconnected')
    })
  })

  server.on('clientError', (err, socket) => {
    log.debug({ err }, 'bad request on agent endpoint')
    refuse(socket, (err as NodeJS.ErrnoException).code === 'HPE_HEADER_OVERFLOW' ? 431 : 400, 'bad request')
  })
  return server
}

function headerValue (req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

const REASONS: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 431: 'Request Header Fields Too Large', 503: 'Service Unavailable' }

/** Answers a raw socket with a short HTTP error and closes it. */
function refuse (socket: Duplex, status: number, reason: string, extra: Record<string, string> = {}): void {
  if (!socket.writable) { socket.destroy(); return }
  const body = `${reason}\n`
  const head = [`HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}`, 'content-type: text/plain', `content-length: ${Buffer.byteLength(body)}`, 'connection: close']
  for (const [k, v] of Object.entries(extra)) head.push(`${k}: ${v}`)
  socket.end(head.join('\r\n') + '\r\n\r\n' + body)
  socket.once('finish', () => socket.destroy())
}
