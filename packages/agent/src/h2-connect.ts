/**
 * One TLS connection to the upstream that offers ALPN `h2` and `http/1.1`,
 * with the same CA, client certificate, server name and verification as the
 * HTTP/1.1 pool in upstream.ts. The caller reads `alpnProtocol` to learn
 * whether the upstream speaks HTTP/2.
 */
import { isIP } from 'node:net'
import tls, { type TLSSocket } from 'node:tls'
import { UpstreamError } from './errors.ts'

/** TLS settings of the upstream, as upstream.ts resolved them. */
export interface TlsSettings {
  ca?: string
  cert?: string
  key?: string
  servername?: string
  rejectUnauthorized: boolean
}

/** Where and how {@link connectAlpn} dials. */
export interface AlpnTarget {
  /** Hostname or IP (IPv6 without brackets). */
  host: string
  /** TCP port. */
  port: number
  /** `host:port` for messages (IPv6 in brackets). */
  authority: string
  tls: TlsSettings
}

/** ALPN offer: h2 first, so that an apiserver picks it; http/1.1 so that any other server still answers. */
const ALPN = ['h2', 'http/1.1']

/**
 * Dials the upstream; resolves once the TLS handshake is done (the certificate
 * verified), rejects on a connect or TLS error or after `timeoutMs`
 * milliseconds with an `UpstreamError` worded as the HTTP/1.1 pool's.
 */
export function connectAlpn (target: AlpnTarget, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    // As https.Agent does: SNI is the host name, never an IP literal.
    const servername = target.tls.servername ?? (isIP(target.host) === 0 ? target.host : undefined)
    const socket = tls.connect({
      host: target.host,
      port: target.port,
      ...dropUndefined({ ca: target.tls.ca, cert: target.tls.cert, key: target.tls.key, servername }),
      rejectUnauthorized: target.tls.rejectUnauthorized,
      ALPNProtocols: ALPN
    })
    // small requests must not wait for Nagle (node:http does the same for its sockets)
    socket.setNoDelay(true)
    const timer = setTimeout(() => {
      socket.destroy(new UpstreamError(`connect to ${target.authority} timed out after ${timeoutMs} ms`))
    }, timeoutMs)
    timer.unref()
    const onError = (err: Error): void => {
      clearTimeout(timer)
      reject(err)
    }
    socket.once('error', onError)
    socket.once('secureConnect', () => {
      clearTimeout(timer)
      socket.off('error', onError)
      resolve(socket)
    })
  })
}

function dropUndefined (o: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(o)) {
    if (v !== undefined) out[k] = v
  }
  return out
}
