/**
 * The upstream: the one address this agent ever dials (the dial allowlist is
 * this object; nothing the server sends can change it), the TLS settings and
 * credentials for it, a keep-alive HTTP/1.1 connection pool, and (for
 * https:// upstreams unless turned off) the HTTP/2 session pool, which uses
 * the same TLS settings and credentials.
 */
import http from 'node:http'
import https from 'node:https'
import { readFileSync } from 'node:fs'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { dirname, resolve as resolvePath } from 'node:path'
import type { Logger } from '@tower/mux'
import { parseKubeconfig, resolveContext, type ResolvedContext } from '@tower/pki'
import { IN_CLUSTER_CA_FILE, IN_CLUSTER_TOKEN_FILE, type UpstreamConfig } from './config.ts'
import { basicAuth, noCredentials, staticToken, TokenFile, type CredentialSource } from './credentials.ts'
import { CredentialsError, KubeconfigError, UpstreamError } from './errors.ts'
import { H2Pool } from './h2-pool.ts'
import type { AgentMetrics } from './metrics.ts'

/** Options of {@link createUpstream}. */
export interface UpstreamOptions {
  logger: Logger
  /** Token files are re-checked at most this often, in milliseconds. */
  credentialRefreshMs: number
  /** Pooled keep-alive connections, at most. */
  maxSockets: number
  /** Limit on TCP + TLS connect, in milliseconds. */
  connectTimeoutMs: number
  /** HTTP/2 for plain requests: `auto` (when ALPN offers it) or `off`. Default `off`. */
  http2?: 'auto' | 'off'
  /** HTTP/2 sessions open at once, at most. Default 64. */
  h2MaxSessions?: number
  /** Liveness check interval of an h2 session, in milliseconds. Default 30000. */
  h2PingIntervalMs?: number
  /** Time a PING may take before its session is destroyed, in milliseconds. Default 10000. */
  h2PingTimeoutMs?: number
  /** Counts dials to the upstream (duration, failures). */
  metrics?: AgentMetrics
}

/** Request options of {@link Upstream.request}. */
export interface UpstreamRequest {
  method: string
  /** Path and query, as received. */
  path: string
  /** Flat raw header list `[name, value, name, value, …]`, already filtered; Host and Authorization are added here. */
  headers: string[]
}

/** The resolved upstream. */
export interface Upstream {
  /** `https:` or `http:`. */
  readonly protocol: 'https:' | 'http:'
  /** Hostname or IP to dial (IPv6 without brackets). */
  readonly host: string
  /** Port to dial. */
  readonly port: number
  /** `host:port` for the Host header (IPv6 in brackets). */
  readonly authority: string
  /** True when the upstream's certificate is not verified. */
  readonly insecure: boolean
  /** The HTTP/2 session pool; undefined for http:// upstreams and with `http2: 'off'`. */
  readonly h2: H2Pool | undefined
  /** The current credential as an Authorization value, if any. */
  authorization (): string | undefined
  /** Starts a request with the current credentials. `upgrade` requests get a dedicated half-open-capable connection. */
  request (req: UpstreamRequest, upgrade: boolean): http.ClientRequest
  /** Frees pooled connections. */
  close (): void
}

interface Target {
  url: URL
  tls: { ca?: string, cert?: string, key?: string, servername?: string, rejectUnauthorized: boolean }
  credentials: CredentialSource
}

/** Builds the upstream from config, reading files now, so that mistakes show at start. */
export function createUpstream (config: UpstreamConfig, o: UpstreamOptions): Upstream {
  const log = o.logger
  const target = resolveTarget(config, o)
  const url = target.url
  const protocol = url.protocol as 'https:' | 'http:'
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  const port = url.port !== '' ? Number(url.port) : protocol === 'https:' ? 443 : 80
  const authority = url.port !== '' ? url.host : `${url.host}:${port}`
  const secure = protocol === 'https:'
  if (secure && !target.tls.rejectUnauthorized) log.warn({ upstream: authority }, 'upstream certificate is NOT verified (insecureSkipVerify)')

  const tlsOptions = secure ? dropUndefined(target.tls) : {}
  const poolOptions = { keepAlive: true, maxSockets: o.maxSockets, maxFreeSockets: Math.min(o.maxSockets, 256), scheduling: 'lifo' as const }
  const pool = secure ? new https.Agent({ ...poolOptions, ...tlsOptions }) : new http.Agent(poolOptions)
  const seen = new WeakSet<Socket>()
  const h2 = secure && o.http2 === 'auto'
    ? new H2Pool({
      target: { host, port, authority, tls: target.tls },
      logger: log,
      maxSessions: o.h2MaxSessions ?? 64,
      // a burst while a session is dialled: more than this goes over HTTP/1.1
      maxWaiters: 4096,
      connectTimeoutMs: o.connectTimeoutMs,
      pingIntervalMs: o.h2PingIntervalMs ?? 30_000,
      pingTimeoutMs: o.h2PingTimeoutMs ?? 10_000,
      metrics: o.metrics,
      adoptHttp1: (socket) => {
        spare = socket
        return () => {
          spare?.destroy()
          spare = undefined
        }
      }
    })
    : undefined
  // The ALPN probe's socket, when it chose HTTP/1.1: the next new connection
  // of the HTTP/1.1 pool is this one, not a second dial.
  let spare: TLSSocket | undefined
  if (h2 !== undefined) {
    const dialNew = pool.createConnection.bind(pool)
    pool.createConnection = (options, cb) => {
      const socket = spare
      spare = undefined
      if (socket !== undefined && !socket.destroyed) return socket
      return dialNew(options, cb)
    }
  }

  const armConnectTimeout = (req: http.ClientRequest): void => {
    req.on('socket', (socket: Socket) => {
      if (seen.has(socket)) return
      seen.add(socket)
      if (!socket.connecting) return
      const started = performance.now()
      let dialing = true
      const timer = setTimeout(() => {
        const err = new UpstreamError(`connect to ${authority} timed out after ${o.connectTimeoutMs} ms`)
        if (dialing) o.metrics?.upstreamDialFailed(err)
        dialing = false
        req.destroy(err)
      }, o.connectTimeoutMs)
      timer.unref()
      const clear = (): void => clearTimeout(timer)
      socket.once(secure ? 'secureConnect' : 'connect', () => {
        clear()
        if (dialing) o.metrics?.upstreamDialed('http/1.1', performance.now() - started)
        dialing = false
      })
      socket.once('error', (err: Error) => {
        if (dialing) o.metrics?.upstreamDialFailed(err)
        dialing = false
      })
      socket.once('close', clear)
    })
  }

  return {
    protocol,
    host,
    port,
    authority,
    insecure: secure && !target.tls.rejectUnauthorized,
    h2,
    authorization: () => target.credentials.authorization(),
    request (r: UpstreamRequest, upgrade: boolean): http.ClientRequest {
      const headers = r.headers.slice()
      headers.push('Host', authority)
      const auth = target.credentials.authorization()
      if (auth !== undefined) headers.push('Authorization', auth)
      const options: https.RequestOptions = {
        host,
        port,
        method: r.method,
        path: r.path,
        headers: headers as unknown as http.OutgoingHttpHeaders,
        // An upgraded connection leaves the pool anyway; a fresh one can be
        // opened half-open, which the upgrade relay needs for half-close.
        agent: upgrade ? false : pool,
        ...(upgrade ? { ...tlsOptions, allowHalfOpen: true } : {})
      }
      const req = (secure ? https : http).request(options)
      armConnectTimeout(req)
      return req
    },
    close (): void {
      pool.destroy()
      h2?.close()
    }
  }
}

function resolveTarget (config: UpstreamConfig, o: UpstreamOptions): Target {
  const log = o.logger
  switch (config.kind) {
    case 'in-cluster': {
      const host = config.host.includes(':') ? `[${config.host}]` : config.host
      const caFile = config.caFile ?? IN_CLUSTER_CA_FILE
      return {
        url: new URL(`https://${host}:${config.port}`),
        tls: { ca: readFileOrThrow(caFile, 'in-cluster CA'), rejectUnauthorized: true },
        credentials: new TokenFile(config.tokenFile ?? IN_CLUSTER_TOKEN_FILE, o.credentialRefreshMs, log)
      }
    }
    case 'kubeconfig': {
      const { cluster, user } = readKubeconfig(config.path, config.context)
      if (cluster.proxyUrl !== undefined) log.warn({ kubeconfig: config.path, ignored: ['proxy-url'] }, 'kubeconfig proxy-url is ignored: the agent dials the apiserver directly')
      const url = new URL(cluster.server)
      if (url.protocol !== 'https:' && url.protocol !== 'http:') {
        throw new KubeconfigError(`kubeconfig ${config.path}: cluster ${JSON.stringify(cluster.name)}: server must be https:// or http://, got ${url.protocol}`)
      }
      let credentials: CredentialSource = noCredentials
      if (user.token !== undefined) credentials = staticToken(user.token)
      else if (user.tokenFile !== undefined) credentials = new TokenFile(user.tokenFile, o.credentialRefreshMs, log)
      else if (user.username !== undefined && user.password !== undefined) credentials = basicAuth(user.username, user.password)
      return {
        url,
        tls: { ca: cluster.caPem, cert: user.clientCertPem, key: user.clientKeyPem, servername: cluster.tlsServerName, rejectUnauthorized: !cluster.insecureSkipTlsVerify },
        credentials
      }
    }
    case 'url': {
      let credentials: CredentialSource = noCredentials
      if (config.token !== undefined) credentials = staticToken(config.token)
      else if (config.tokenFile !== undefined) credentials = new TokenFile(config.tokenFile, o.credentialRefreshMs, log)
      return {
        url: new URL(config.url),
        tls: {
          ca: config.caPem,
          cert: config.clientCert?.certPem,
          key: config.clientCert?.keyPem,
          servername: config.servername,
          rejectUnauthorized: config.insecureSkipVerify !== true
        },
        credentials
      }
    }
  }
}

/**
 * Reads a kubeconfig with pki's reader, the one kubeconfig reader of Tower:
 * files it names resolve against its directory, as kubectl does. Exec
 * plugins, auth providers and impersonation are refused there. Every problem
 * becomes a {@link KubeconfigError} naming the file and the field.
 */
function readKubeconfig (path: string, context: string | undefined): ResolvedContext {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new KubeconfigError(`cannot read kubeconfig ${path}: ${(err as Error).message}`, { cause: err })
  }
  try {
    return resolveContext(parseKubeconfig(text), {
      contextName: context,
      baseDir: dirname(resolvePath(path)),
      readFile: (file) => readFileSync(file, 'utf8')
    })
  } catch (err) {
    const e = err as Error & { field?: unknown }
    const field = typeof e.field === 'string' && e.field !== '' ? e.field : undefined
    // pki's messages start with "kubeconfig: "; say which kubeconfig instead
    const detail = e.message.startsWith('kubeconfig: ') ? e.message.slice('kubeconfig: '.length) : e.message
    throw new KubeconfigError(`kubeconfig ${path}: ${detail}`, { cause: err, field })
  }
}

function readFileOrThrow (path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    throw new CredentialsError(`cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err })
  }
}

function dropUndefined<T extends object> (o: T): Partial<T> {
  const out: Partial<T> = {}
  for (const [k, v] of Object.entries(o)) {
    if (v !== undefined) (out as Record<string, unknown>)[k] = v
  }
  return out
}
