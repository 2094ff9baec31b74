/**
 * Proxy mode, HTTP upgrades arriving on the agent's internal HTTP server:
 * re-originated to the upstream and relayed by the one upgrade relay in
 * @tower/transport (101 then a raw two-way pipe with half-close; anything
 * else relayed close-delimited).
 */
import type { ClientRequest, IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { LogLimiter, Logger } from '@tower/mux'
import { relayUpgrade as relay, sendStatusRaw } from '@tower/transport'
import type { Upstream } from './upstream.ts'
import { upstreamRequestHeaders } from './headers.ts'
import { badRequestTarget, upstreamUnreachable } from './status.ts'

/** Handles an upgrade request arriving on the agent's internal HTTP server. */
export function relayUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer, upstream: Upstream, log: Logger, warnings: LogLimiter): void {
  // node:http stopped watching the socket when it handed it over
  socket.on('error', (err: Error) => log.debug({ reason: err.message }, 'upgrade: tunnel stream error'))
  const bad = badRequestTarget(req.url)
  if (bad !== undefined) {
    warnings.warn('bad-target', { method: req.method }, 'upgrade target is not a path; answering 400')
    sendStatusRaw(socket, 400, bad)
    return
  }
  const unreachable = (err: Error): void => {
    const code = (err as { code?: string }).code
    warnings.warn(`upstream:${code ?? 'unknown'}`, { reason: err.message, code }, 'upgrade: upstream unreachable; answering 502')
    const answer = upstreamUnreachable(err)
    sendStatusRaw(socket, answer.code, answer.message)
  }
  let request: ClientRequest
  try {
    request = upstream.request({ method: req.method ?? 'GET', path: req.url ?? '/', headers: upstreamRequestHeaders(req, true) }, true)
  } catch (err) {
    // e.g. a header value node refuses to send
    unreachable(err as Error)
    return
  }
  relay({
    socket,
    head,
    request,
    onUpgrade: () => log.debug({ method: req.method, upgrade: req.headers.upgrade }, 'upgrade established'),
    onError: unreachable,
    onClose: (err) => {
      if (err !== undefined) log.debug({ reason: err.message }, 'upgraded connection ended with an error')
    }
  })
}
