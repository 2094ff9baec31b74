/**
 * Agent options: their types, defaults and validation. The library never
 * reads `process.env`; the cli maps environment variables (KUBERNETES_SERVICE_HOST,
 * HTTPS_PROXY, NO_PROXY, …) onto these options. Messages name the option and
 * the `tower agent` flag that sets it (see {@link opt}).
 */
import type { Registry } from 'prom-client'
import { randomUUID } from 'node:crypto'
import type { Logger, SessionOptions } from '@tower/mux'
import { silentLogger, verifyConfig } from '@tower/mux'
import { isClusterName } from '@tower/pki'
import { AGENT_ID_PATTERN, AGENT_PATH, sessionOptions } from '@tower/transport'
import { InvalidArgumentError } from './errors.ts'

/** Default ServiceAccount token file of an in-cluster pod. */
export const IN_CLUSTER_TOKEN_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/token'
/** Default ServiceAccount CA bundle of an in-cluster pod. */
export const IN_CLUSTER_CA_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt'

/**
 * The kube-apiserver as seen from inside the cluster: https://host:port with
 * the pod's ServiceAccount token (re-read when it rotates) and CA.
 */
export interface InClusterUpstream {
  kind: 'in-cluster'
  /** Apiserver host; the cli passes `$KUBERNETES_SERVICE_HOST`. */
  host: string
  /** Apiserver port; the cli passes `$KUBERNETES_SERVICE_PORT`. */
  port: number
  /** ServiceAccount token file. Default {@link IN_CLUSTER_TOKEN_FILE}. */
  tokenFile?: string
  /** CA bundle file. Default {@link IN_CLUSTER_CA_FILE}. */
  caFile?: string
}

/** An apiserver and credentials taken from a kubeconfig file. */
export interface KubeconfigUpstream {
  kind: 'kubeconfig'
  /** Path of the kubeconfig file. Relative paths inside it resolve against its directory. */
  path: string
  /** Context to use. Default: the file's `current-context`. */
  context?: string
}

/** Any HTTP(S) service, with optional credentials: for `tower demo --upstream` and tests. */
export interface UrlUpstream {
  kind: 'url'
  /** `https://host[:port]` or `http://host[:port]`; a path is ignored. */
  url: string
  /** CA bundle (PEM) to verify the upstream with. Default: the system roots. */
  caPem?: string
  /** Skip verifying the upstream's certificate. Logged as a warning. */
  insecureSkipVerify?: boolean
  /** TLS server name to verify, if it differs from the URL host. */
  servername?: string
  /** Static bearer token added to every request. */
  token?: string
  /** Bearer token file, re-read when it changes. */
  tokenFile?: string
  /** Client certificate and key (PEM) for mutual TLS. */
  clientCert?: { certPem: string, keyPem: string }
}

/** Where the agent sends what arrives through the tunnel. */
export type UpstreamConfig = InClusterUpstream | KubeconfigUpstream | UrlUpstream

/** Reconnect jitter: `full` = uniform in [min, min·2^n]; `decorrelated` = uniform in [min, 3·previous]. */
export type JitterKind = 'full' | 'decorrelated'

/** Options of `new Agent(options)`. */
export interface AgentOptions {
  /** Server URL, `wss://host:port`. A bare path gets the agent endpoint path appended. */
  serverUrl: string
  /** Allow a cleartext `ws://` server URL. Only for tests and local demos: the join token travels in the clear. */
  allowInsecureWs?: boolean
  /** Name of the cluster this agent serves (a DNS label). */
  cluster: string
  /** The cluster's join token. Never logged. */
  token: string
  /** CA bundle (PEM) the server's certificate must chain to. Required for wss unless `insecureSkipVerify`. */
  caPem?: string
  /** Do not verify the server's certificate. A warning is logged at every connect. */
  insecureSkipVerify?: boolean
  /** TLS server name to verify, if it differs from the URL host. */
  serverName?: string
  /** The upstream to re-originate requests to. */
  upstream: UpstreamConfig
  /** Egress proxy URL (`http://` or `https://`) for the connection to the server; the cli passes `$HTTPS_PROXY`. */
  httpsProxy?: string
  /** Hosts that bypass `httpsProxy`: comma-separated `host`, `.suffix`, `host:port`, `*`, IP or CIDR; the cli passes `$NO_PROXY`. */
  noProxy?: string
  /** Smallest reconnect delay, in milliseconds. Default 1000. */
  reconnectMinMs?: number
  /** Largest reconnect delay, in milliseconds. Also the delay after the server rejects the token. Default 30000. */
  reconnectMaxMs?: number
  /** Jitter of the reconnect delay. Default `decorrelated`. */
  reconnectJitter?: JitterKind
  /** A connection up this long resets the backoff, in milliseconds. Default 10000. */
  stableAfterMs?: number
  /** Limit on the WebSocket opening handshake (TCP, TLS, proxy, HTTP), in milliseconds. Default 10000. */
  handshakeTimeoutMs?: number
  /** This instance's id, sent to the server for logs and stream spreading. Default: a random uuid. */
  agentId?: string
  /** Logger; the agent logs under `{ component: 'agent', cluster, agentId }`. Default: silent. */
  logger?: Logger
  /** The prom-client Registry the agent's metrics go in (createMetricsRegistry); absent: a private one. Never the global default. */
  metricsRegistry?: Registry
  /** Overrides of the tuned mux settings (keepalive, windows) from @tower/transport. */
  session?: Partial<Omit<SessionOptions, 'client' | 'logger'>>
  /** How long a new stream may take to deliver its preamble, in milliseconds. Default 10000. */
  preambleTimeoutMs?: number
  /** Token files are re-checked at most this often, in milliseconds. Default 1000. */
  credentialRefreshMs?: number
  /** Largest request head accepted from the tunnel, in bytes. Default 64 KiB. */
  maxHeaderSize?: number
  /** Time allowed for the first request head to arrive on a new tunnel stream (the stream is reset after it), in milliseconds. Default 60000. */
  headersTimeoutMs?: number
  /** Limit on a TCP (+TLS) connect to the upstream, in milliseconds. Default 10000. */
  upstreamConnectTimeoutMs?: number
  /**
   * Connections to the upstream, at most (an integer). Every open watch holds
   * one (HTTP/1.1), so the session also takes at most this many streams at
   * once: one more is refused (the server answers 503) instead of waiting
   * silently for a connection. Keep it at or above the server's streams per
   * agent (`--max-streams-per-agent`, sent in the 101 as `tower-max-streams`);
   * the agent warns at connect when it is lower. Default 16,384.
   */
  upstreamMaxSockets?: number
  /** On `stop()`, how long open streams may drain before the session is destroyed, in milliseconds. Default 5000. */
  stopTimeoutMs?: number
  /**
   * HTTP/2 to an https:// upstream for plain requests: `auto` uses it when the
   * upstream's ALPN offers `h2` (checked on the first request and again after
   * each reconnect to the server), `off` keeps HTTP/1.1. Upgrades (exec,
   * attach, port-forward) always use HTTP/1.1. Default `auto`.
   */
  upstreamHttp2?: Http2Mode
  /**
   * HTTP/2 sessions to the upstream, at most (an integer). A new one opens
   * when every open one carries the peer's SETTINGS_MAX_CONCURRENT_STREAMS;
   * past this limit requests go over HTTP/1.1 rather than wait. Default 64:
   * kube-apiserver v1.36 advertises 100 streams per connection, so 6,400 h2 streams.
   */
  upstreamH2MaxSessions?: number
  /** An h2 session that read nothing for this long is sent a PING, in milliseconds. Default 30000. */
  upstreamH2PingIntervalMs?: number
  /** An unanswered PING destroys its session (its streams error) after this long, in milliseconds. Default 10000. */
  upstreamH2PingTimeoutMs?: number
  /**
   * Announce hop frames (`tower-features: hframe`): the server then sends
   * plain requests as compact binary frames instead of HTTP/1.1 text, which
   * the agent need not parse (spec.md section 7.3). `false` is for comparing
   * the two hops; servers older than the feature ignore the header. Default true.
   */
  hopFrames?: boolean
}

/** `auto`: HTTP/2 to the upstream when its ALPN offers it; `off`: HTTP/1.1 only. */
export type Http2Mode = 'auto' | 'off'

/** Defaults of the optional {@link AgentOptions} fields. */
export const AGENT_DEFAULTS = {
  reconnectMinMs: 1000,
  reconnectMaxMs: 30_000,
  reconnectJitter: 'decorrelated' as JitterKind,
  stableAfterMs: 10_000,
  handshakeTimeoutMs: 10_000,
  preambleTimeoutMs: 10_000,
  credentialRefreshMs: 1000,
  maxHeaderSize: 64 * 1024,
  headersTimeoutMs: 60_000,
  upstreamConnectTimeoutMs: 10_000,
  upstreamMaxSockets: 16_384,
  stopTimeoutMs: 5000,
  upstreamHttp2: 'auto' as Http2Mode,
  upstreamH2MaxSessions: 64,
  upstreamH2PingIntervalMs: 30_000,
  upstreamH2PingTimeoutMs: 10_000
} as const

/** Largest {@link AgentOptions.upstreamH2MaxSessions}. */
const MAX_H2_SESSIONS = 1024

/** {@link AgentOptions} after validation, with defaults filled in. */
export interface ResolvedAgentOptions extends Required<Omit<AgentOptions,
'caPem' | 'serverName' | 'httpsProxy' | 'noProxy' | 'session' | 'serverUrl' | 'metricsRegistry'>> {
  serverUrl: URL
  caPem: string | undefined
  serverName: string | undefined
  httpsProxy: string | undefined
  noProxy: string
  session: Partial<Omit<SessionOptions, 'client' | 'logger'>>
}

/** Validates options and fills in defaults. Throws `InvalidArgumentError` naming the option. */
export function resolveAgentOptions (o: AgentOptions): ResolvedAgentOptions {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError('agent options must be an object')

  let serverUrl: URL
  try {
    serverUrl = new URL(o.serverUrl)
  } catch {
    throw new InvalidArgumentError(`${opt('serverUrl')} ${JSON.stringify(o.serverUrl)} is not a URL`)
  }
  if (serverUrl.protocol === 'https:') serverUrl.protocol = 'wss:'
  if (serverUrl.protocol === 'ws:' || serverUrl.protocol === 'http:') {
    if (o.allowInsecureWs !== true) {
      throw new InvalidArgumentError(`${opt('serverUrl')} is cleartext ws://: the join token would travel unencrypted; use wss://, or set ${opt('allowInsecureWs')} (tests and local demos only)`)
    }
    serverUrl.protocol = 'ws:'
  } else if (serverUrl.protocol !== 'wss:') {
    throw new InvalidArgumentError(`${opt('serverUrl')} must be wss:// (got ${serverUrl.protocol})`)
  }
  if (serverUrl.username !== '' || serverUrl.password !== '') throw new InvalidArgumentError(`${opt('serverUrl')} must not carry credentials`)
  if (serverUrl.pathname === '/' || serverUrl.pathname === '') serverUrl.pathname = AGENT_PATH

  // an exported-but-empty HTTPS_PROXY / NO_PROXY means unset, as in curl and Go
  const httpsProxy = o.httpsProxy === '' ? undefined : o.httpsProxy

  if (typeof o.cluster !== 'string' || !isClusterName(o.cluster)) {
    throw new InvalidArgumentError(`${opt('cluster')} must be a DNS label: 1-63 lower-case letters, digits or "-", starting and ending with a letter or digit`)
  }
  if (typeof o.token !== 'string' || o.token.length === 0 || !/^[\x21-\x7e]+$/.test(o.token)) {
    throw new InvalidArgumentError(`${opt('token')} must be a non-empty string of printable characters without spaces`)
  }
  const secure = serverUrl.protocol === 'wss:'
  if (o.caPem !== undefined && !isPem(o.caPem)) throw new InvalidArgumentError(`${opt('caPem')} must be a PEM CA bundle`)
  if (secure && o.caPem === undefined && o.insecureSkipVerify !== true) {
    throw new InvalidArgumentError(`${opt('caPem')} is required to verify the server (or set ${opt('insecureSkipVerify')}, which is unsafe)`)
  }
  const agentId = o.agentId ?? randomUUID()
  if (!AGENT_ID_PATTERN.test(agentId)) throw new InvalidArgumentError(`${opt('agentId')} must be 1-64 characters of [A-Za-z0-9._-]`)
  if (httpsProxy !== undefined) {
    let p: URL
    try {
      p = new URL(httpsProxy)
    } catch {
      throw new InvalidArgumentError(`${opt('httpsProxy')} is not a URL`)
    }
    if (p.protocol !== 'http:' && p.protocol !== 'https:') throw new InvalidArgumentError(`${opt('httpsProxy')} must be an http:// or https:// URL`)
  }
  if (o.noProxy !== undefined && typeof o.noProxy !== 'string') throw new InvalidArgumentError(`${opt('noProxy')} must be a string`)
  if (o.reconnectJitter !== undefined && o.reconnectJitter !== 'full' && o.reconnectJitter !== 'decorrelated') {
    throw new InvalidArgumentError('reconnectJitter must be "full" or "decorrelated"')
  }
  if (o.upstreamHttp2 !== undefined && o.upstreamHttp2 !== 'auto' && o.upstreamHttp2 !== 'off') {
    throw new InvalidArgumentError(`${opt('upstreamHttp2')} must be "auto" or "off"`)
  }
  if (o.hopFrames !== undefined && typeof o.hopFrames !== 'boolean') throw new InvalidArgumentError(`${opt('hopFrames')} must be a boolean`)
  validateUpstream(o.upstream)

  const numbers = {} as Record<Exclude<keyof typeof AGENT_DEFAULTS, 'reconnectJitter' | 'upstreamHttp2'>, number>
  for (const key of Object.keys(AGENT_DEFAULTS) as Array<keyof typeof numbers | 'reconnectJitter' | 'upstreamHttp2'>) {
    if (key === 'reconnectJitter' || key === 'upstreamHttp2') continue
    const v = (o as unknown as Record<string, unknown>)[key] ?? AGENT_DEFAULTS[key]
    // 0 = re-check the token file on every request
    const min = key === 'credentialRefreshMs' ? 0 : Number.MIN_VALUE
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
      throw new InvalidArgumentError(`${opt(key)} must be a ${min === 0 ? 'non-negative' : 'positive'} number`)
    }
    numbers[key] = v
  }
  if (!Number.isInteger(numbers.upstreamMaxSockets)) throw new InvalidArgumentError(`${opt('upstreamMaxSockets')} must be a positive integer`)
  if (!Number.isInteger(numbers.upstreamH2MaxSessions) || numbers.upstreamH2MaxSessions > MAX_H2_SESSIONS) {
    throw new InvalidArgumentError(`${opt('upstreamH2MaxSessions')} must be an integer from 1 to ${MAX_H2_SESSIONS}`)
  }
  if (numbers.reconnectMinMs > numbers.reconnectMaxMs) throw new InvalidArgumentError(`${opt('reconnectMinMs')} must not exceed ${opt('reconnectMaxMs')}`)
  validateSession(o.session)

  return {
    ...numbers,
    reconnectJitter: o.reconnectJitter ?? AGENT_DEFAULTS.reconnectJitter,
    upstreamHttp2: o.upstreamHttp2 ?? AGENT_DEFAULTS.upstreamHttp2,
    hopFrames: o.hopFrames ?? true,
    serverUrl,
    allowInsecureWs: o.allowInsecureWs === true,
    cluster: o.cluster,
    token: o.token,
    caPem: o.caPem,
    insecureSkipVerify: o.insecureSkipVerify === true,
    serverName: o.serverName,
    upstream: o.upstream,
    httpsProxy,
    noProxy: o.noProxy ?? '',
    agentId,
    logger: o.logger ?? silentLogger,
    session: o.session ?? {}
  }
}

/**
 * Checks the mux overrides now rather than at the first connect, where a
 * throw would end the reconnect loop. Keepalive comes from transport's
 * SESSION_DEFAULTS on both ends; an override must keep the timeout above the
 * interval, or a ping would count as lost before the next one is due.
 */
function validateSession (session: AgentOptions['session']): void {
  if (session === undefined) return
  if (session === null || typeof session !== 'object') throw new InvalidArgumentError('session must be an object of mux options')
  const merged = sessionOptions(session)
  try {
    verifyConfig({ ...merged, client: false })
  } catch (err) {
    throw new InvalidArgumentError(`session.${(err as Error).message}`)
  }
  const interval = merged.keepAliveInterval ?? 0
  const timeout = merged.keepAliveTimeout ?? 0
  if (interval > 0 && timeout <= interval) {
    throw new InvalidArgumentError(`session.keepAliveTimeout (${timeout} ms) must be greater than session.keepAliveInterval (${interval} ms)`)
  }
}

function validateUpstream (u: UpstreamConfig): void {
  if (u === null || typeof u !== 'object') throw new InvalidArgumentError('upstream must be an object with a kind')
  switch (u.kind) {
    case 'in-cluster':
      if (typeof u.host !== 'string' || u.host === '') throw new InvalidArgumentError(`${opt('upstream.host')} is required for in-cluster`)
      if (!Number.isInteger(u.port) || u.port < 1 || u.port > 65535) throw new InvalidArgumentError(`${opt('upstream.port')} must be a TCP port`)
      return
    case 'kubeconfig':
      if (typeof u.path !== 'string' || u.path === '') throw new InvalidArgumentError(`${opt('upstream.path')} (the kubeconfig file) is required`)
      return
    case 'url': {
      let url: URL
      try {
        url = new URL(u.url)
      } catch {
        throw new InvalidArgumentError(`${opt('upstream.url')} ${JSON.stringify(u.url)} is not a URL`)
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new InvalidArgumentError(`${opt('upstream.url')} must be http:// or https://`)
      if (u.caPem !== undefined && !isPem(u.caPem)) throw new InvalidArgumentError(`${opt('upstream.caPem')} must be a PEM CA bundle`)
      if (u.token !== undefined && u.tokenFile !== undefined) throw new InvalidArgumentError(`upstream.token and ${opt('upstream.tokenFile')} are exclusive`)
      if (u.clientCert !== undefined && (!isPem(u.clientCert.certPem) || !isPem(u.clientCert.keyPem))) {
        throw new InvalidArgumentError('upstream.clientCert needs certPem and keyPem in PEM')
      }
      return
    }
    default:
      throw new InvalidArgumentError(`upstream.kind must be "in-cluster", "kubeconfig" or "url" (got ${JSON.stringify((u as { kind?: unknown }).kind)})`)
  }
}

/**
 * How `tower agent` sets each option: messages name the option and, in
 * parentheses, its flag or environment variable, so that one text serves
 * library callers and operators (and log lines, which the cli cannot reword).
 */
const OPTION_FLAGS = new Map<string, string>([
  ['serverUrl', '--server'],
  ['allowInsecureWs', '--allow-insecure-ws'],
  ['cluster', '--cluster'],
  ['token', '--token or --token-file'],
  ['caPem', '--ca-file'],
  ['insecureSkipVerify', '--insecure-skip-verify'],
  ['serverName', '--server-name'],
  ['agentId', '--agent-id'],
  ['httpsProxy', 'HTTPS_PROXY'],
  ['noProxy', 'NO_PROXY'],
  ['reconnectMinMs', '--reconnect-min-ms'],
  ['reconnectMaxMs', '--reconnect-max-ms'],
  ['upstreamMaxSockets', '--upstream-max-sockets'],
  ['upstreamHttp2', '--upstream-http2'],
  ['upstreamH2MaxSessions', '--upstream-h2-max-sessions'],
  ['hopFrames', '--hop-frames'],
  ['upstream.host', 'KUBERNETES_SERVICE_HOST'],
  ['upstream.port', 'KUBERNETES_SERVICE_PORT'],
  ['upstream.path', '--kubeconfig'],
  ['upstream.url', '--upstream'],
  ['upstream.caPem', '--upstream-ca-file'],
  ['upstream.tokenFile', '--upstream-token-file']
])

/** `option (--flag)`, or just `option` when `tower agent` has no flag for it. */
export function opt (option: string): string {
  const flag = OPTION_FLAGS.get(option)
  return flag === undefined ? option : `${option} (${flag})`
}

function isPem (s: unknown): s is string {
  return typeof s === 'string' && s.includes('-----BEGIN ')
}
