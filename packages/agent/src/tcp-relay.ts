/**
 * Passthrough mode: the stream carries raw bytes (TLS end to end between the
 * caller and the apiserver) and the agent relays them to its configured
 * upstream's host:port. Never to an address from the server: the upstream is
 * fixed at start.
 */
import net from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from '@tower/mux'
import type { Upstream } from './upstream.ts'
import { splice } from '@tower/transport'
import { UpstreamError } from './errors.ts'

/** Dials the upstream and splices it with `stream`; a dial failure resets the stream. */
export function relayTcp (stream: Duplex, upstream: Upstream, connectTimeoutMs: number, log: Logger): void {
  const socket = net.connect({ host: upstream.host, port: upstream.port, allowHalfOpen: true, noDelay: true })
  let connected = false
  const timer = setTimeout(() => {
    socket.destroy(new UpstreamError(`connect to ${upstream.authority} timed out after ${connectTimeoutMs} ms`))
  }, connectTimeoutMs)
  timer.unref()

  const beforeConnect = (err: Error): void => {
    clearTimeout(timer)
    log.warn({ upstream: upstream.authority, reason: err.message }, 'passthrough: upstream unreachable; resetting stream')
    stream.destroy()
  }
  const streamGone = (): void => {
    clearTimeout(timer)
    socket.destroy()
  }
  socket.once('error', beforeConnect)
  stream.once('close', streamGone)
  socket.once('connect', () => {
    connected = true
    clearTimeout(timer)
    socket.off('error', beforeConnect)
    stream.off('close', streamGone)
    splice(stream, socket, (err) => {
      if (err !== undefined) log.debug({ reason: err.message }, 'passthrough relay ended with an error')
    })
  })
  if (stream.destroyed && !connected) streamGone()
}
