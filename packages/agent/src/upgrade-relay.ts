/**
 * Proxy mode, HTTP upgrades of any method and token: WebSocket
 * (`v5.channel.k8s.io` exec/attach/port-forward) and kubectl's
 * `POST … Upgrade: SPDY/3.1`. (http-proxy drops anything but GET + websocket;
 * hence this relay.)
 *
 * The upstream's answer decides:
 * - 101: the status line and the upstream's raw headers go back verbatim,
 *   then bytes are spliced both ways with half-close;
 * - anything else (403, 400, …): the response is relayed, close-delimited,
 *   and the stream is closed after it.
 */
import type { ClientRequest, IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { pipeline } from 'node:stream'
import type { Logger } from '@tower/mux'
import type { Upstream } from './upstream.ts'
import { downstreamResponseHeaders, upstreamRequestHeaders } from './headers.ts'
import { splice } from '@tower/transport'
import { upstreamUnreachable } from './status.ts'

/** Handles an upgrade request arriving on the agent's internal HTTP server. */
export function relayUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer, upstream: Upstream, log: Logger): void {
  // node:http stopped watching the socket when it handed it over
  socket.on('error', (err: Error) => log.debug({ reason: err.message }, 'upgrade: tunnel stream error'))

  let upReq: ClientRequest
  try {
    upReq = upstream.request({ method: req.method ?? 'GET', path: req.url ?? '/', headers: upstreamRequestHeaders(req, true) }, true)
  } catch (err) {
    answerUnreachable(socket, err as Error, log)
    return
  }

  let answered = false
  const clientGone = (): void => {
    if (!answered) upReq.destroy()
  }
  socket.once('close', clientGone)

  upReq.once('upgrade', (upRes: IncomingMessage, upSocket: Duplex, upHead: Buffer) => {
    answered = true
    socket.off('close', clientGone)
    if (socket.destroyed) {
      upSocket.destroy()
      return
    }
    socket.write(responseHead(upRes, upRes.rawHeaders))
    if (upHead.length > 0) socket.write(upHead)
    if (head.length > 0) upSocket.write(head)
    log.debug({ method: req.method, upgrade: req.headers.upgrade }, 'upgrade established')
    splice(socket, upSocket, (err) => {
      if (err !== undefined) log.debug({ reason: err.message }, 'upgraded connection ended with an error')
    })
  })

  upReq.once('response', (upRes: IncomingMessage) => {
    answered = true
    socket.off('close', clientGone)
    // Close-delimited: the length may be unknown and the stream ends here anyway.
    const headers = downstreamResponseHeaders(upRes).concat(['Connection', 'close'])
    socket.write(responseHead(upRes, headers))
    // Ignore anything more the client sends; the stream is done after this.
    socket.resume()
    pipeline(upRes, socket, (err) => {
      if (err !== undefined && err !== null) log.debug({ reason: err.message }, 'upgrade refusal relay aborted')
    })
  })

  upReq.once('error', (err: Error) => {
    if (answered) {
      socket.destroy()
      return
    }
    answered = true
    socket.off('close', clientGone)
    if (!socket.destroyed) answerUnreachable(socket, err, log)
  })

  upReq.end()
}

function responseHead (res: IncomingMessage, rawHeaders: string[]): string {
  let head = `HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}\r\n`
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) head += `${rawHeaders[i]}: ${rawHeaders[i + 1]}\r\n`
  return head + '\r\n'
}

function answerUnreachable (socket: Duplex, err: Error, log: Logger): void {
  log.warn({ reason: err.message, code: (err as { code?: string }).code }, 'upgrade: upstream unreachable; answering 502')
  const { code, body } = upstreamUnreachable(err)
  socket.resume()
  socket.end(`HTTP/1.1 ${code} Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
}
