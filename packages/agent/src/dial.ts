/**
 * One attempt to open the WebSocket to the server: TLS verified against the
 * given CA, the join token in Authorization, through the egress proxy unless
 * NO_PROXY exempts the server. Resolves with the open socket or rejects with
 * a `HandshakeError` carrying the HTTP status the server answered.
 */
import { WebSocket } from 'ws'
import type { Agent as HttpAgent, ClientRequest, IncomingMessage } from 'node:http'
import { HEADER_AGENT_ID, HEADER_CLUSTER, SUBPROTOCOL, wsClientOptions } from '@tower/transport'
import type { ResolvedAgentOptions } from './config.ts'
import { HandshakeError } from './errors.ts'

/** A dial in progress: `opened` settles once; `abort()` cancels it. */
export interface Dial {
  readonly ws: WebSocket
  readonly opened: Promise<WebSocket>
  abort (): void
}

/** Longest part of a refusal body quoted in the error, in bytes. */
const MAX_REASON_BYTES = 512

/** Starts one connection attempt. `proxyAgent` is used when given (the caller applies NO_PROXY). */
export function dialServer (o: ResolvedAgentOptions, proxyAgent: HttpAgent | undefined): Dial {
  const secure = o.serverUrl.protocol === 'wss:'
  const ws = new WebSocket(o.serverUrl, SUBPROTOCOL, {
    ...wsClientOptions({ secure, handshakeTimeout: o.handshakeTimeoutMs }),
    headers: {
      authorization: `Bearer ${o.token}`,
      [HEADER_CLUSTER]: o.cluster,
      [HEADER_AGENT_ID]: o.agentId
    },
    ...(o.caPem !== undefined ? { ca: o.caPem } : {}),
    ...(o.serverName !== undefined ? { servername: o.serverName } : {}),
    rejectUnauthorized: !o.insecureSkipVerify,
    ...(proxyAgent !== undefined ? { agent: proxyAgent } : {})
  })

  const opened = new Promise<WebSocket>((resolve, reject) => {
    let settled = false
    const settle = (err?: Error): void => {
      if (settled) return
      settled = true
      if (err === undefined) resolve(ws)
      else reject(err)
    }
    ws.once('open', () => settle())
    ws.on('error', (err: Error) => {
      settle(new HandshakeError(describe(err), undefined, { cause: err }))
    })
    ws.once('unexpected-response', (_req: ClientRequest, res: IncomingMessage) => {
      const status = res.statusCode ?? 0
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        if (body.length < MAX_REASON_BYTES) body += chunk
      })
      let finished = false
      const done = (): void => {
        if (finished) return
        finished = true
        settle(new HandshakeError(refusal(status, res.statusMessage, body), status))
        // aborts the request and moves the ws to CLOSED
        ws.terminate()
      }
      res.once('end', done)
      res.once('error', done)
      res.once('close', done)
    })
  })

  return {
    ws,
    opened,
    abort () {
      ws.terminate()
    }
  }
}

function refusal (status: number, statusMessage: string | undefined, body: string): string {
  let reason = body.trim().slice(0, MAX_REASON_BYTES)
  // a Kubernetes-style Status or {"message": …} body: quote only the message
  try {
    const parsed = JSON.parse(reason) as { message?: unknown }
    if (typeof parsed.message === 'string') reason = parsed.message
  } catch {
    // not JSON: quote the text as it is
  }
  reason = reason.replace(/\s+/g, ' ')
  return `server answered ${status}${statusMessage ? ' ' + statusMessage : ''}${reason ? ': ' + reason : ''}`
}

// Node's TLS errors are precise but terse; name the usual cause.
function describe (err: Error & { code?: string }): string {
  switch (err.code) {
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
      return `server certificate not trusted (${err.code}): is the CA bundle the server's?`
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `server certificate does not match the host: ${err.message}`
    default:
      return err.message
  }
}
