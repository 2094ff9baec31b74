/**
 * Errors answered to callers as Kubernetes `Status` objects, so kubectl and
 * client-go print the message instead of "unknown error".
 */
import type { ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'

const REASONS: Record<number, [string, string]> = {
  401: ['Unauthorized', 'Unauthorized'],
  431: ['Request Header Fields Too Large', 'RequestEntityTooLarge'],
  502: ['Bad Gateway', 'InternalError'],
  503: ['Service Unavailable', 'ServiceUnavailable']
}

/** The JSON body of a Kubernetes Status failure. */
export function statusBody (code: number, message: string): string {
  return JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason: REASONS[code]?.[1] ?? 'InternalError', code }) + '\n'
}

/** Answers an HTTP response with a Status failure. */
export function sendStatus (res: ServerResponse, code: number, message: string, headers: Record<string, string> = {}): void {
  const body = statusBody(code, message)
  res.writeHead(code, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

/**
 * The answer for an error that kept a request from reaching an agent:
 * 503 + Retry-After when it is worth retrying (no agent, agent busy or
 * going away), 502 otherwise.
 */
export function deliveryFailure (err: Error): { code: number, headers: Record<string, string> } {
  switch ((err as { code?: string }).code) {
    case 'TOWER_ERR_NO_AGENT':
    case 'TOWER_ERR_STREAM_LIMIT':
    case 'TOWER_ERR_SESSION_CLOSED':
      return { code: 503, headers: { 'retry-after': '1' } }
    default:
      return { code: 502, headers: {} }
  }
}

/** Answers a raw socket (an upgrade request) with a Status failure and closes it. */
export function sendStatusRaw (socket: Duplex, code: number, message: string): void {
  const body = statusBody(code, message)
  socket.end(`HTTP/1.1 ${code} ${REASONS[code]?.[0] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
}
