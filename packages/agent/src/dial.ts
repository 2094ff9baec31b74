/**
 * One attempt to open the WebSocket to the server: TLS verified against the
 * given CA, the join token in Authorization, through the egress proxy unless
 * NO_PROXY exempts the server, announcing the features this agent serves
 * (`tower-features`; old servers ignore it). Resolves with the upgraded socket or rejects
 * with a `HandshakeError` carrying the HTTP status the server answered.
 */
import type { Agent as HttpAgent, IncomingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'
import { FEATURE_HOP_FRAME, HEADER_AGENT_ID, HEADER_CLUSTER, HEADER_FEATURES, SUBPROTOCOL, requestUpgrade } from '@tower/transport'
import type { ResolvedAgentOptions } from './config.ts'

/** An upgraded connection: the socket, the bytes that came with the 101, and the 101's headers. */
export interface Connection {
  readonly socket: Socket
  readonly head: Buffer
  /** Response headers of the 101 (names lower-case), e.g. the server's `tower-max-streams`. */
  readonly headers: IncomingHttpHeaders
}

/** A dial in progress: `opened` settles once; `abort()` cancels it. */
export interface Dial {
  readonly opened: Promise<Connection>
  abort (): void
}

/** Starts one connection attempt. `proxyAgent` is used when given (the caller applies NO_PROXY). */
export function dialServer (o: ResolvedAgentOptions, proxyAgent: HttpAgent | undefined): Dial {
  const pending = requestUpgrade({
    url: o.serverUrl,
    protocol: SUBPROTOCOL,
    headers: {
      authorization: `Bearer ${o.token}`,
      [HEADER_CLUSTER]: o.cluster,
      [HEADER_AGENT_ID]: o.agentId,
      ...(o.hopFrames ? { [HEADER_FEATURES]: FEATURE_HOP_FRAME } : {})
    },
    ...(o.caPem !== undefined ? { ca: o.caPem } : {}),
    ...(o.serverName !== undefined ? { servername: o.serverName } : {}),
    rejectUnauthorized: !o.insecureSkipVerify,
    ...(proxyAgent !== undefined ? { agent: proxyAgent } : {}),
    timeoutMs: o.handshakeTimeoutMs
  })
  return { opened: pending.done, abort: () => { pending.abort() } }
}
