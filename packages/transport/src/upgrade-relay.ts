/**
 * The one upgrade relay, for both hops of the proxy path (caller → server →
 * agent → kube-apiserver): HTTP upgrades of any method and token, WebSocket
 * (`v5.channel.k8s.io` exec, attach, port-forward) and kubectl's
 * `POST … Upgrade: SPDY/3.1` alike.
 *
 * The next hop's answer decides:
 * - 101: its status line and raw headers go back verbatim, then the two
 *   connections are spliced with half-close, so kubectl closing stdin does
 *   not end the output direction. Only now is the caller's socket made
 *   half-open: before, a peer that FINs must not leave it in CLOSE_WAIT;
 * - anything else (403, 400, …): the response goes back close-delimited,
 *   hop-by-hop headers removed, and the connection closes after it.
 */
import type { ClientRequest, IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { dropSet, filterRawHeaders, withConnectionOptions } from './hop-by-hop.ts'
import { splice } from './splice.ts'

/** Options of {@link relayUpgrade}. */
export interface UpgradeRelayOptions {
  /** The connection of the request to upgrade, as node:http handed it to an `upgrade` listener. */
  socket: Duplex
  /** Bytes node:http read past the request head; sent on after the 101. */
  head: Buffer
  /** The request to the next hop, with its headers, not ended yet: the relay ends it. */
  request: ClientRequest
  /** The next hop answered 101; runs before any byte flows. */
  onUpgrade?: (res: IncomingMessage) => void
  /**
   * The 101 went back and the two connections are being spliced: `upstream`
   * is the next hop's upgraded connection (for a drain that must end the
   * session at a frame boundary).
   */
  onSpliced?: (res: IncomingMessage, upstream: Duplex) => void
  /**
   * The next hop failed before answering. Nothing has been written to
   * `socket`: answer it (a Status 502) or destroy it.
   */
  onError: (err: Error) => void
  /** The upgraded (or refused) exchange is over; `err` is the first failure, if any. */
  onClose?: (err?: Error) => void
}

// A refused upgrade goes back close-delimited, so its length goes too.
const REFUSAL_DROP = dropSet(['content-length'])

/** Sends `o.request` and relays its answer to `o.socket` (see the module header). */
export function relayUpgrade (o: UpgradeRelayOptions): void {
  const { socket, request } = o
  let answered = false
  let upgraded = false
  const callerGone = (): void => {
    if (!answered) request.destroy()
  }
  socket.once('close', callerGone)

  request.once('upgrade', (res: IncomingMessage, upSocket: Duplex, upHead: Buffer) => {
    answered = true
    upgraded = true
    socket.off('close', callerGone)
    if (socket.destroyed) {
      upSocket.destroy()
      o.onClose?.()
      return
    }
    socket.allowHalfOpen = true
    o.onUpgrade?.(res)
    socket.write(responseHead(res, res.rawHeaders))
    // Put back, not written: every byte for the caller then passes through
    // the splice, where onSpliced's owner may be following the framing.
    if (upHead.length > 0) upSocket.unshift(upHead)
    if (o.head.length > 0) upSocket.write(o.head)
    splice(socket, upSocket, o.onClose)
    o.onSpliced?.(res, upSocket)
  })

  request.once('response', (res: IncomingMessage) => {
    answered = true
    socket.off('close', callerGone)
    const headers = filterRawHeaders(res.rawHeaders, withConnectionOptions(REFUSAL_DROP, res.headers.connection))
    headers.push('connection', 'close')
    // Whatever else the caller sends is not for anyone now.
    socket.resume()
    socket.write(responseHead(res, headers))
    res.pipe(socket)
    let failure: Error | undefined
    res.once('error', (err: Error) => {
      failure = err
      socket.destroy()
    })
    socket.once('close', () => {
      res.destroy()
      o.onClose?.(failure)
    })
  })

  request.once('error', (err: Error) => {
    if (answered) {
      // The refusal's body broke off: a truncated answer must look like one.
      if (!upgraded) socket.destroy()
      return
    }
    answered = true
    socket.off('close', callerGone)
    if (socket.destroyed) return
    o.onError(err)
  })

  request.end()
}

function responseHead (res: IncomingMessage, rawHeaders: readonly string[]): string {
  let head = `HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}\r\n`
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) head += `${rawHeaders[i]}: ${rawHeaders[i + 1]}\r\n`
  return head + '\r\n'
}
