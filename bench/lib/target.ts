/**
 * A path under test, as the load client sees it: where to connect and which
 * TLS material to use. Every path is measured by the same client code; only
 * the Target differs.
 *
 * `connect` is for Konnectivity's HTTP-CONNECT frontend: the client opens the
 * proxy-server's Unix socket, sends `CONNECT authority`, and runs HTTP(S) over
 * the tunnelled socket — what kube-apiserver itself does, with no extra hop.
 */
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'

/** How to reach one path under test. Plain data: it crosses the IPC channel. */
export interface Target {
  /** Row label in the report, e.g. `direct`, `tower-passthrough`. */
  name: string
  /** `https` for TLS to the far end (end to end or terminated by the tunnel). */
  protocol: 'http' | 'https'
  /** TCP host to dial (ignored when `connect` is set). */
  host: string
  /** TCP port to dial (ignored when `connect` is set). */
  port: number
  /** CA PEM to verify the server certificate with. */
  ca?: string
  /** Client certificate PEM (Tower proxy mode). */
  cert?: string
  /** Client key PEM (Tower proxy mode). */
  key?: string
  /** TLS SNI / verification name; defaults to `host`. */
  servername?: string
  /** Tunnel each connection through an HTTP CONNECT proxy on a Unix socket. */
  connect?: { socketPath: string, authority: string }
}

/** Opens a Unix socket to an HTTP CONNECT proxy and returns the tunnelled socket. */
export function connectThrough (c: { socketPath: string, authority: string }, timeoutMs = 10_000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path: c.socketPath })
    const t = setTimeout(() => fail(new Error(`CONNECT ${c.authority}: no answer in ${timeoutMs} ms`)), timeoutMs)
    let head = Buffer.alloc(0)
    const fail = (err: Error): void => { clearTimeout(t); s.destroy(); reject(err) }
    const onData = (d: Buffer): void => {
      head = Buffer.concat([head, d])
      const end = head.indexOf('\r\n\r\n')
      if (end < 0) { if (head.length > 16 * 1024) fail(new Error('CONNECT: response head too large')); return }
      s.off('data', onData)
      s.off('error', fail)
      clearTimeout(t)
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head.subarray(0, end).toString('latin1'))
      if (status?.[1] !== '200') { s.destroy(); reject(new Error(`CONNECT ${c.authority}: ${head.subarray(0, end).toString('latin1').split('\r\n')[0]}`)); return }
      s.pause()
      const rest = head.subarray(end + 4)
      if (rest.length > 0) s.unshift(rest)
      s.setNoDelay?.(true)
      resolve(s)
    }
    s.on('data', onData)
    s.once('error', fail)
    s.once('connect', () => s.write(`CONNECT ${c.authority} HTTP/1.1\r\nHost: ${c.authority}\r\n\r\n`))
  })
}

/** Options for {@link makeAgent}. */
export interface AgentOptions {
  /** Reuse connections between requests. */
  keepAlive: boolean
  /** Upper bound on sockets per origin. */
  maxSockets: number
}

/**
 * An http(s).Agent for the target. TLS session resumption is off so a "new
 * connection" is a full handshake on every path alike.
 */
export function makeAgent (t: Target, o: AgentOptions): http.Agent {
  const tlsOpts = { ca: t.ca, cert: t.cert, key: t.key, servername: t.servername ?? (net.isIP(t.host) === 0 ? t.host : undefined), maxCachedSessions: 0 }
  const agent = t.protocol === 'https'
    ? new https.Agent({ keepAlive: o.keepAlive, maxSockets: o.maxSockets, scheduling: 'fifo', ...tlsOpts })
    : new http.Agent({ keepAlive: o.keepAlive, maxSockets: o.maxSockets, scheduling: 'fifo' })
  if (t.connect !== undefined) {
    const via = t.connect
    // http.Agent calls createConnection(options, cb) and accepts an async answer through cb.
    ;(agent as any).createConnection = (_opts: unknown, cb: (err: Error | null, s?: net.Socket) => void) => {
      connectThrough(via).then((raw) => {
        if (t.protocol === 'http') { cb(null, raw); return }
        cb(null, tls.connect({ socket: raw, ...tlsOpts, servername: t.servername ?? 'localhost' }))
      }, (err: Error) => cb(err))
      return undefined
    }
  }
  return agent
}

/** Request options for `path` on the target through `agent`. */
export function requestOptions (t: Target, agent: http.Agent, method: string, path: string,
  headers: http.OutgoingHttpHeaders = {}): https.RequestOptions {
  return { agent, host: t.host, port: t.port, method, path, headers: { host: `${t.host}:${t.port}`, ...headers } }
}

/** `http.request` or `https.request` for the target's protocol. */
export function requestFn (t: Target): typeof http.request {
  return t.protocol === 'https' ? https.request : http.request
}
