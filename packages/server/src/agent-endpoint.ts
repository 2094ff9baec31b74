/**
 * The agent endpoint: where agents dial in. Every check happens on the HTTP
 * upgrade request, before the WebSocket handshake is accepted, so a rejected
 * agent costs one HTTP response and stores nothing:
 *
 *   path → websocket headers → subprotocol → agent id and cluster name
 *   (shape only) → token (constant time) → draining → admission rate
 *
 * Authentication comes before admission: the bucket only limits how fast
 * authenticated agents start sessions, so a flood of bad tokens cannot keep
 * real agents at 503. Unknown cluster and wrong token get the same opaque
 * 401; the log says which it was. An agent sent away with 503 (draining, or
 * the bucket is empty) is told in `Retry-After` when its turn comes
 * (admission.ts), so a crowd of agents returns at the rate it can be admitted.
 *
 * Accepted connections become a yamux session (this side is the yamux client
 * and opens the streams; streams the agent opens are refused at no cost)
 * registered in the TunnelPool, replacing an older session of the same agent.
 */
import https from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { randomBytes } from 'node:crypto'
import { LogLimiter, Session, type Logger } from '@tower/mux'
import { AGENT_ID_PATTERN, AGENT_PATH, FEATURE_HOP_FRAME, HEADER_AGENT_ID, HEADER_CLUSTER, HEADER_FEATURES, HEADER_MAX_STREAMS, SUBPROTOCOL, acceptUpgrade, sendStatusRaw, sessionOptions, upgradeProblem, wsStream } from '@tower/transport'
import { isClusterName } from '@tower/pki'
import type { ClusterRegistry } from './registry/api.ts'
import type { TunnelPool } from './tunnels.ts'
import { bearerToken } from './registry/tokens.ts'
import { AdmissionLimiter } from './admission.ts'
import type { AgentEndpointLimits } from './config.ts'
import type { ServerMetrics } from './metrics.ts'
import { authenticated, guarded, headCheckInterval, ListenerSockets, pathOnly, socketOf } from './listener-guard.ts'

/** Options of {@link createAgentEndpoint}. */
export interface AgentEndpointOptions {
  registry: ClusterRegistry
  tunnels: TunnelPool
  /** PEM certificate and key served to agents. */
  tls: { certPem: string, keyPem: string }
  limits: AgentEndpointLimits
  /** Counts handshakes, reconnects and the sessions' GoAways and window stalls. */
  metrics?: ServerMetrics
  /** True while the server drains: new agents are sent away (503) to another replica. */
  draining?: () => boolean
  logger: Logger
}

/** The agent endpoint: the HTTPS server (not yet listening) and its tracked sockets. */
export interface AgentEndpoint {
  server: https.Server
  sockets: ListenerSockets
}

/** An HTTPS server (not yet listening) that accepts agents. Plain requests get 404 except GET /healthz. */
export function createAgentEndpoint (opts: AgentEndpointOptions): https.Server {
  return agentEndpoint(opts).server
}

/** Like {@link createAgentEndpoint}, with the tracked sockets. */
export function agentEndpoint (opts: AgentEndpointOptions): AgentEndpoint {
  const log = opts.logger.child({ component: 'agent-endpoint' })
  const limits = opts.limits
  const admission = new AdmissionLimiter(limits.acceptPerSecond, limits.acceptBurst)
  // A flood of refused handshakes must not flood the log.
  const refusals = new LogLimiter(log, { burst: 20, windowMs: 10_000 })
  const server = https.createServer({ cert: opts.tls.certPem, key: opts.tls.keyPem, maxHeaderSize: 16 * 1024, handshakeTimeout: limits.tlsHandshakeTimeoutMs, connectionsCheckingInterval: headCheckInterval(limits.handshakeTimeoutMs) })
  server.headersTimeout = limits.handshakeTimeoutMs
  server.requestTimeout = limits.handshakeTimeoutMs
  server.timeout = limits.idleTimeoutMs
  server.maxConnections = limits.maxConnections
  const sockets = new ListenerSockets(server, log, { tls: true, maxUnauthenticatedPerSource: limits.maxUnauthenticatedPerSource, refusedUnauthenticated: () => opts.metrics?.unauthenticatedRefused('agent-endpoint') })

  server.on('request', guarded(log, 'request', socketOf.request, (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n')
      return
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end(`tower agent endpoint: connect with a WebSocket to ${AGENT_PATH}\n`)
  }))

  server.on('upgrade', guarded(log, 'upgrade', socketOf.upgrade, (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`
    const rawCluster = headerValue(req, HEADER_CLUSTER)
    const rawAgentId = headerValue(req, HEADER_AGENT_ID)
    // Only well-formed values reach the log.
    const cluster = rawCluster !== undefined && isClusterName(rawCluster) ? rawCluster : undefined
    const agentId = rawAgentId !== undefined && AGENT_ID_PATTERN.test(rawAgentId) ? rawAgentId : undefined
    // retryAfterS: the agent's turn (admission.ts), sent as Retry-After and logged
    const reject = (status: number, why: string, reason: string, retryAfterS?: number): void => {
      refusals.warn('agent-rejected', { remote, cluster, agentId, status, why, path: pathOnly(req.url), ...(retryAfterS === undefined ? {} : { retryAfterS }) }, 'agent rejected')
      opts.metrics?.handshakeRefused(why)
      sendStatusRaw(socket, status, reason, retryAfterS === undefined ? {} : { 'retry-after': String(retryAfterS) })
    }
    socket.on('error', (err: NodeJS.ErrnoException) => log.debug({ code: err.code, remote }, 'agent socket error before upgrade'))

    if (pathOnly(req.url) !== AGENT_PATH) return reject(404, 'wrong-path', `unknown path; agents connect to ${AGENT_PATH}`)
    const problem = upgradeProblem(req)
    if (problem !== undefined) return reject(400, 'not-websocket', `not a websocket handshake: ${problem}`)
    const protocols = (headerValue(req, 'sec-websocket-protocol') ?? '').split(',').map((s) => s.trim())
    if (!protocols.includes(SUBPROTOCOL)) return reject(400, 'wrong-subprotocol', `unsupported protocol; this server speaks ${SUBPROTOCOL}`)
    if (rawAgentId !== undefined && agentId === undefined) return reject(400, 'invalid-agent-id', `malformed ${HEADER_AGENT_ID} header`)
    if (cluster === undefined) return reject(400, 'invalid-name', `missing or malformed ${HEADER_CLUSTER} header`)
    const token = bearerToken(headerValue(req, 'authorization'))
    const auth = token === undefined ? { ok: false as const, why: 'no-token' } : opts.registry.authenticateAgent(cluster, token)
    // Unknown cluster and wrong token get the same answer: no probing for names.
    if (!auth.ok) return reject(401, auth.why, 'invalid agent token for this cluster')
    authenticated(req.socket)
    // Only authenticated agents are handed turns: a flood of bad tokens cannot push real agents back.
    if (opts.draining?.() === true) return reject(503, 'draining', 'this server replica is draining; connect again to reach another', admission.turn())
    if (!admission.take()) return reject(503, 'admission-rate', 'too many agents connecting; retry later', admission.turn())

    // Without an id of its own the agent cannot be told apart from its peers: never replace on it.
    const id = agentId ?? `anonymous-${randomBytes(6).toString('hex')}`
    acceptUpgrade(req, socket, SUBPROTOCOL, { [HEADER_MAX_STREAMS]: String(limits.maxStreamsPerAgent) })
    // The mux keepalive watches the session from here on.
    ;(socket as Socket).setTimeout(0)
    const transport = wsStream(socket as Socket, { role: 'server', head })
    const session = new Session(transport, {
      ...sessionOptions({ maxStreams: limits.maxStreamsPerAgent }),
      client: true,
      acceptStreams: false,
      streamOpenTimeout: limits.streamOpenTimeoutMs,
      // The mux adds its own component key.
      logger: opts.logger.child({ cluster, agentId: id })
    })
    // A Close 1000/1001 from the agent ends the transport cleanly: a normal
    // disconnect (agent stopped), logged at info without a stack.
    let endedCleanly = false
    transport.once('end', () => { endedCleanly = true })
    const since = Date.now()
    opts.metrics?.agentAccepted(cluster, id, session)
    const hopFrames = agentFeatures(headerValue(req, HEADER_FEATURES)).has(FEATURE_HOP_FRAME)
    const replaced = opts.tunnels.add(cluster, { agentId: id, remote, since, session, credential: auth.credential, hopFrames })
    if (replaced !== undefined) log.info({ cluster, agentId: id, remote, oldRemote: replaced.remote }, 'agent reconnected; its previous session was closed')
    log.info({ cluster, agentId: id, remote, agents: opts.tunnels.count(cluster), hopFrames }, 'agent connected')
    // The session ends the transport itself (Close frame, then TCP), with a
    // grace timer for a peer that never answers.
    session.once('close', (err?: Error) => {
      const fields = { cluster, agentId: id, remote, connectedMs: Date.now() - since, agents: opts.tunnels.count(cluster) }
      if (err === undefined || endedCleanly) log.info(err === undefined ? fields : { ...fields, reason: err.message }, 'agent disconnected')
      else log.warn({ ...fields, err }, 'agent disconnected')
    })
  }))
  return { server, sockets }
}

/** Longest `tower-features` value read, in characters; a longer one announces nothing. */
export const MAX_FEATURES_LENGTH = 256

/** Most feature tokens read from `tower-features`; the rest are ignored. */
export const MAX_FEATURES = 16

/**
 * The feature tokens an agent announced in `tower-features` (comma-separated).
 * Hostile input: an over-long value announces nothing, at most
 * {@link MAX_FEATURES} tokens count, unknown tokens are returned and ignored
 * by the caller, and nothing here throws.
 */
export function agentFeatures (value: unknown): Set<string> {
  const out = new Set<string>()
  if (typeof value !== 'string' || value.length > MAX_FEATURES_LENGTH) return out
  for (const token of value.split(',', MAX_FEATURES)) {
    const t = token.trim().toLowerCase()
    if (t !== '') out.add(t)
  }
  return out
}

function headerValue (req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}
