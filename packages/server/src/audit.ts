/**
 * The audit log: one JSON line per caller request on a proxy-mode cluster
 * port, shaped like an audit.k8s.io/v1 Event, with Tower's own fields under
 * `tower`. A passthrough port gets one line per connection, since Tower
 * sees only ciphertext there.
 *
 * An entry is opened when a request arrives and is completed at the
 * request's own end (the HTTP/1.1 response's `close`, the upgraded socket's
 * `close`; an h2 stream's `close` through its relay, h2-relay.ts, which
 * holds the stream's one close listener), so every way a request can end,
 * refusals by Tower included, produces its ResponseComplete record exactly
 * once. The proxy tells the entry only what it alone knows: the caller it
 * authenticated, and the agent's response head with the relay that counts
 * its body. Long-running requests (watches,
 * upgrades) get a ResponseStarted record too, when their head goes out.
 *
 * Records carry no credential: no header is copied except User-Agent, and
 * secret-looking query parameters are replaced before the URI is recorded.
 * The entry's auditID goes to the agent as `Audit-ID`, which kube-apiserver
 * takes as its own audit ID, so both logs can be joined; a caller's own
 * Audit-ID is replaced, so it cannot forge that join.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { InvalidArgumentError, type Logger } from '@tower/mux'
import type { AuditSink } from './audit-sink.ts'
import { requestInfo, type ObjectRef, type RequestVerb } from './request-verb.ts'
import { sniffStatus } from './socket-status.ts'

/** How much is recorded: `None` nothing, `Metadata` one record per request without bodies. */
export type AuditLevel = 'None' | 'Metadata'

/** The levels, as the CLI offers them. */
export const AUDIT_LEVELS: readonly AuditLevel[] = ['None', 'Metadata']

/** Which leg a request came on. */
export type AuditProtocol = 'http/1.1' | 'h2' | 'tcp'

/** One audit record (audit.k8s.io/v1 Event, plus `tower`). */
export interface AuditEvent {
  kind: 'Event'
  apiVersion: 'audit.k8s.io/v1'
  level: 'Metadata'
  auditID: string
  stage: 'ResponseStarted' | 'ResponseComplete'
  requestURI: string
  verb: RequestVerb
  /** Absent when Tower refused the caller before knowing who it is. */
  user?: { username: string, groups: string[] }
  sourceIPs: string[]
  userAgent?: string
  objectRef?: ObjectRef
  /** Absent when no response head was sent (the caller left first, or a passthrough connection). */
  responseStatus?: { code: number }
  /** RFC 3339 with microseconds, as kube-apiserver writes them. */
  requestReceivedTimestamp: string
  stageTimestamp: string
  tower: {
    cluster: string
    /** The agent that carried the request, when one did. */
    agentId?: string
    mode: 'proxy' | 'passthrough'
    protocol: AuditProtocol
    /** Milliseconds from the request's arrival to this stage. */
    latencyMs: number
    /** Bytes from the caller: the request body (proxy), or every byte of the connection (upgrades, passthrough). */
    bytesIn: number
    /** Bytes to the caller: the agent's response body (proxy), or every byte of the connection (upgrades, passthrough). */
    bytesOut: number
  }
}

/** Options of {@link AuditLog}. */
export interface AuditLogOptions {
  level: AuditLevel
  /** Where records go; unused at level None. */
  sink?: AuditSink
  logger: Logger
}

/** The value that replaces a secret in a recorded URI. */
export const REDACTED = 'REDACTED'
/** Longest recorded request URI, in characters (after redaction); longer ones are cut and end with `…`. */
export const MAX_AUDIT_URI = 2048
/** Longest recorded User-Agent, in characters. */
export const MAX_AUDIT_USER_AGENT = 256

const SECRET_PARAMS = new Set(['token', 'access_token', 'password', 'secret'])
// A bearer credential as a value: "Bearer …", a JWT (three base64url parts), or a Tower token.
const BEARER_VALUE = /^(?:bearer\s|eyJ[\w-]*\.[\w-]+\.[\w-]*|tower-(?:agent|caller)_)/i

/**
 * `target` as it may be recorded: every query value whose parameter is a
 * secret (token, access_token, password, secret) or that looks like a bearer
 * token becomes {@link REDACTED}; then cut to {@link MAX_AUDIT_URI}.
 */
export function redactURI (target: string | undefined): string {
  const url = typeof target === 'string' ? target : ''
  const q = url.indexOf('?')
  let out = url
  if (q >= 0) {
    const pairs = url.slice(q + 1).split('&').map((pair) => {
      const eq = pair.indexOf('=')
      const key = eq < 0 ? pair : pair.slice(0, eq)
      const value = eq < 0 ? '' : pair.slice(eq + 1)
      return secretParam(key, value) ? `${key}=${REDACTED}` : pair
    })
    out = `${url.slice(0, q)}?${pairs.join('&')}`
  }
  return out.length > MAX_AUDIT_URI ? `${out.slice(0, MAX_AUDIT_URI - 1)}…` : out
}

function secretParam (key: string, value: string): boolean {
  if (SECRET_PARAMS.has(decoded(key).toLowerCase())) return true
  return BEARER_VALUE.test(decoded(value).trim())
}

function decoded (s: string): string {
  try {
    return decodeURIComponent(s.replaceAll('+', ' '))
  } catch {
    return s
  }
}

/**
 * `headers` (a raw name/value list for the agent) with any caller-sent
 * Audit-ID removed and `auditID` added.
 */
export function setAuditIdHeader (headers: string[], auditID: string): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    if (headers[i]!.toLowerCase() === 'audit-id') headers.splice(i, 2)
  }
  headers.push('Audit-ID', auditID)
}

/** What an entry reads from an arriving request (HTTP/1.1 or an h2 stream's view). */
export interface AuditedRequest {
  socket: Duplex
  headers: { 'user-agent'?: string | undefined }
  method?: string | undefined
  url?: string | undefined
}

/** The audit log of one server: opens an entry per request or connection. */
export class AuditLog {
  readonly #level: AuditLevel
  readonly #sink: AuditSink | undefined
  readonly #log: Logger
  // The entry of each request in flight, by the object the proxy passes around.
  readonly #entries = new WeakMap<object, AuditEntry>()

  constructor (opts: AuditLogOptions) {
    if (!AUDIT_LEVELS.includes(opts.level)) throw new InvalidArgumentError(`level: one of ${AUDIT_LEVELS.join(', ')}`)
    if (opts.level !== 'None' && opts.sink === undefined) throw new InvalidArgumentError('sink: required unless the level is None')
    this.#level = opts.level
    this.#sink = opts.sink
    this.#log = opts.logger.child({ component: 'audit' })
  }

  /** Whether records are written. */
  get enabled (): boolean { return this.#level !== 'None' }

  /** Opens the entry of an HTTP/1.1 request; its record is written when `res` closes. */
  request (cluster: string, req: IncomingMessage, res: ServerResponse): AuditEntry | undefined {
    const entry = this.#open(cluster, req, 'http/1.1', false)
    if (entry === undefined) return undefined
    req.on('data', (chunk: Buffer) => { entry.bytesIn += chunk.length })
    res.once('close', () => entry.complete(res.headersSent ? res.statusCode : undefined))
    return entry
  }

  /**
   * Opens the entry of an h2 stream's request (`view` is what the proxy
   * passes around). The stream's relay owns the stream's one close listener:
   * it sets the byte counts and calls `complete` when the stream closes.
   */
  stream (cluster: string, view: AuditedRequest): AuditEntry | undefined {
    return this.#open(cluster, view, 'h2', false)
  }

  /**
   * Opens the entry of an upgrade request (exec, attach, port-forward,
   * WebSocket); written when the socket closes. The answer is written raw
   * to the socket, so its status is read from the first bytes written.
   */
  upgrade (cluster: string, req: IncomingMessage, socket: Duplex): AuditEntry | undefined {
    const entry = this.#open(cluster, req, 'http/1.1', true)
    if (entry === undefined) return undefined
    const counters = socket as Partial<Socket>
    const read0 = counters.bytesRead ?? 0
    const written0 = counters.bytesWritten ?? 0
    sniffStatus(socket, (code) => entry.started(code))
    socket.once('close', () => {
      entry.bytesIn = (counters.bytesRead ?? 0) - read0
      entry.bytesOut = (counters.bytesWritten ?? 0) - written0
      entry.complete(entry.code)
    })
    return entry
  }

  /** Opens the record of a passthrough connection; written when the socket closes. */
  connection (cluster: string, socket: Socket): AuditEntry | undefined {
    if (!this.enabled) return undefined
    const entry = new AuditEntry(this.#sink!, this.#log, {
      cluster, mode: 'passthrough', protocol: 'tcp', info: { verb: 'connect' }, requestURI: '', sourceIPs: peerAddress(socket), userAgent: undefined
    })
    socket.once('close', () => {
      entry.bytesIn = socket.bytesRead
      entry.bytesOut = socket.bytesWritten
      entry.complete(undefined)
    })
    return entry
  }

  /** The entry opened for `key` (the request, or an h2 stream's view), if any. */
  entryOf (key: object): AuditEntry | undefined {
    return this.#entries.get(key)
  }

  #open (cluster: string, req: AuditedRequest, protocol: AuditProtocol, upgrade: boolean): AuditEntry | undefined {
    if (!this.enabled) return undefined
    const ua = req.headers['user-agent']
    const entry = new AuditEntry(this.#sink!, this.#log, {
      cluster,
      mode: 'proxy',
      protocol,
      info: requestInfo(req.method, req.url, upgrade),
      requestURI: redactURI(req.url),
      sourceIPs: peerAddress(req.socket),
      userAgent: typeof ua === 'string' ? ua.slice(0, MAX_AUDIT_USER_AGENT) : undefined,
      longRunning: upgrade
    })
    this.#entries.set(req, entry)
    return entry
  }
}

interface EntryFields {
  cluster: string
  mode: 'proxy' | 'passthrough'
  protocol: AuditProtocol
  info: ReturnType<typeof requestInfo>
  requestURI: string
  sourceIPs: string[]
  userAgent: string | undefined
  longRunning?: boolean
}

// The peer's address, read once while the request is fresh: an h2 session's
// socket throws ERR_HTTP2_SOCKET_UNBOUND once the session is gone.
function peerAddress (socket: Duplex): string[] {
  try {
    const remote = (socket as Partial<Socket>).remoteAddress
    return typeof remote === 'string' ? [remote] : []
  } catch {
    return []
  }
}

/** What relays a response body (body-relay.ts): the bytes it relayed so far. */
export interface BodyCount {
  readonly bytes: number
}

/** The audit state of one request in flight. */
export class AuditEntry {
  /** The record's auditID (a random UUID), also sent to the agent as Audit-ID. */
  readonly auditID = randomUUID()
  /** Bytes from the caller so far. */
  bytesIn = 0
  /** Bytes to the caller so far. */
  bytesOut = 0
  readonly #sink: AuditSink
  readonly #log: Logger
  readonly #fields: EntryFields
  readonly #received = Date.now()
  readonly #t0 = performance.now()
  #user: { username: string, groups: string[] } | undefined
  #agentId: string | undefined
  #code: number | undefined
  #started = false
  #done = false
  #body: BodyCount | undefined

  constructor (sink: AuditSink, log: Logger, fields: EntryFields) {
    this.#sink = sink
    this.#log = log
    this.#fields = fields
  }

  /** The response status seen so far. */
  get code (): number | undefined { return this.#code }

  /** Records the authenticated caller. */
  caller (user: string, groups: readonly string[]): void {
    this.#user = { username: user, groups: [...groups] }
  }

  /** Records the agent that carries the request. */
  agent (agentId: string | undefined): void {
    if (agentId !== undefined) this.#agentId = agentId
  }

  /**
   * The agent's response head arrived, and `body` relays its body (its byte
   * count becomes `bytesOut` when the record is written); writes the
   * ResponseStarted record of a long-running request (a watch).
   */
  responded (code: number, body: BodyCount | undefined, agentId?: string): void {
    this.agent(agentId)
    this.#body = body
    this.started(code)
  }

  /** A response head went out; a long-running request's ResponseStarted record. */
  started (code: number): void {
    this.#code = code
    const longRunning = this.#fields.longRunning === true || this.#fields.info.verb === 'watch'
    if (longRunning && !this.#started && !this.#done && code < 300 && code >= 100) {
      this.#started = true
      this.#emit('ResponseStarted')
    }
  }

  /** The request is over: writes its ResponseComplete record (once). */
  complete (code: number | undefined): void {
    if (this.#done) return
    this.#done = true
    if (this.#body !== undefined) this.bytesOut = this.#body.bytes
    if (code !== undefined && code > 0) this.#code = code
    this.#emit('ResponseComplete')
  }

  // Runs from 'close' listeners: a failure here must cost the record, never the process.
  #emit (stage: AuditEvent['stage']): void {
    try {
      this.#sink.write(this.#line(stage))
    } catch (err) {
      this.#log.error({ err, stage }, 'audit record not written; dropped')
    }
  }

  #line (stage: AuditEvent['stage']): string {
    const f = this.#fields
    const now = Date.now()
    const event: AuditEvent = {
      kind: 'Event',
      apiVersion: 'audit.k8s.io/v1',
      level: 'Metadata',
      auditID: this.auditID,
      stage,
      requestURI: f.requestURI,
      verb: f.info.verb,
      ...(this.#user !== undefined ? { user: this.#user } : {}),
      sourceIPs: f.sourceIPs,
      ...(f.userAgent !== undefined ? { userAgent: f.userAgent } : {}),
      ...(f.info.objectRef !== undefined ? { objectRef: f.info.objectRef } : {}),
      ...(this.#code !== undefined ? { responseStatus: { code: this.#code } } : {}),
      requestReceivedTimestamp: microTime(this.#received),
      stageTimestamp: microTime(now),
      tower: {
        cluster: f.cluster,
        ...(this.#agentId !== undefined ? { agentId: this.#agentId } : {}),
        mode: f.mode,
        protocol: f.protocol,
        latencyMs: Math.round((performance.now() - this.#t0) * 1000) / 1000,
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut
      }
    }
    return JSON.stringify(event)
  }
}

// kube-apiserver writes audit timestamps with microseconds; Date has milliseconds.
// toISOString always ends in ".sssZ" (years 0-9999), so no regex per record.
function microTime (ms: number): string {
  return new Date(ms).toISOString().slice(0, -1) + '000Z'
}
