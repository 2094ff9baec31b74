/**
 * Dispatch of inbound tunnel streams: read the preamble the server wrote,
 * then either relay raw TCP (passthrough), hand the stream to the internal
 * HTTP server (proxy mode, kind `http`), or serve its hop frames (proxy mode,
 * kind `hframe`).
 */
import type http from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from '@tower/mux'
import { readPreamble } from '@tower/transport'
import type { Upstream } from './upstream.ts'
import { relayTcp } from './tcp-relay.ts'
import type { HopHandler } from './hop-handler.ts'

/** Options of {@link createStreamHandler}. */
export interface StreamHandlerOptions {
  upstream: Upstream
  httpServer: http.Server
  /** Serves streams of kind `hframe`. */
  hopHandler: HopHandler
  logger: Logger
  /** Limit on the preamble's arrival, in milliseconds. */
  preambleTimeoutMs: number
  /** Limit on the passthrough TCP connect, in milliseconds. */
  connectTimeoutMs: number
}

/** Returns the session's `'stream'` listener. */
export function createStreamHandler (o: StreamHandlerOptions): (stream: Duplex) => void {
  const log = o.logger
  return (stream: Duplex): void => {
    // A reset stream errors; without a listener that would crash the process.
    // node:http and the relays attach their own once they own the stream.
    const onEarlyError = (err: Error): void => log.debug({ reason: err.message }, 'stream failed before dispatch')
    stream.on('error', onEarlyError)
    readPreamble(stream, o.preambleTimeoutMs).then((p) => {
      const slog = log.child({ stream: p.id })
      slog.trace({ kind: p.kind }, 'stream accepted')
      if (p.kind === 'tcp') {
        relayTcp(stream, o.upstream, o.connectTimeoutMs, slog)
      } else if (p.kind === 'hframe') {
        o.hopHandler.serve(stream, slog)
        stream.off('error', onEarlyError)
      } else {
        // node:http attaches its own error listener synchronously
        o.httpServer.emit('connection', stream)
        stream.off('error', onEarlyError)
      }
    }, (err: Error & { code?: string }) => {
      if (err.code === 'TOWER_ERR_PREAMBLE') log.warn({ reason: err.message }, 'bad stream preamble; resetting the stream')
      else log.debug({ reason: err.message }, 'stream ended before its preamble')
      stream.destroy()
    })
  }
}
