/**
 * The registry of member clusters, backed by a state directory. It is the
 * only place that knows how tokens are stored and how ports are allocated.
 * The CLI uses it to add clusters and issue credentials; the running server
 * uses it to authenticate and watches it for changes made by the CLI.
 *
 * Every lookup by a name that came from outside (a header, a flag) goes
 * through #find: the one cluster-name rule first, then Object.hasOwn, so no
 * name reaches Object.prototype, and a lookup never throws.
 */
import { EventEmitter } from 'node:events'
import fs from 'node:fs'
import { randomBytes } from 'node:crypto'
import { InvalidArgumentError, type Logger, silentLogger } from '@tower/mux'
import { isClusterName, normalizeSerial, type CertificateBundle } from '@tower/pki'
import { credentialValid, matchAgentToken, nextGraceEnd, type AgentAuthResult } from './agent-credentials.ts'
import { ClusterExistsError, StateError, UnknownClusterError } from './errors.ts'
import { ServerRunningError, UnknownCallerTokenError } from './errors.ts'
import { PidLock, processAlive } from './pid-lock.ts'
import { allocatePort, parsePortRange } from './ports.ts'
import {
  caAbsent, createStoredCa, DEFAULT_CERT_RENEW_BEFORE_DAYS, DEFAULT_SERVER_CERT_VALIDITY_DAYS,
  readStoredCa, serverCertificate, type ServerCertPolicy
} from './registry-certificates.ts'
import { checkAddOptions, checkSettings, type AddOptions } from './registry-input.ts'
import { StateStore, type ClusterRecord, type ServerSettings, type StateFile } from './state-store.ts'
import { MAX_CALLER_TOKENS, MAX_REVOKED_SERIALS } from './state-validate.ts'
import { hashToken, newToken, tokenMatches, TokenPrefix } from './tokens.ts'

export type { AgentAuthResult, AgentRefusal } from './agent-credentials.ts'
export type { AddOptions } from './registry-input.ts'

/** Options of {@link Registry.open}. */
export interface RegistryOptions {
  /** Path of the state directory; created (0700) when missing and `create` is not false. */
  stateDir: string
  /**
   * May a missing state directory be created? Default true. Read-only
   * commands pass false: they fail with TOWER_ERR_STATE instead of making a
   * new directory with a new CA.
   */
  create?: boolean
  /** Settings to write when the directory is new, or to update when given. */
  server?: Partial<ServerSettings>
  /** CA validity in days for a new state directory. */
  caValidityDays?: number
  /** Lifetime of the serving certificate, in days; default 825. */
  serverCertValidityDays?: number
  /** Re-issue the serving certificate when it expires within this many days; also warn when the CA does. Default 30. */
  certRenewBeforeDays?: number
  logger?: Logger
}

/** Who a caller token stands for. */
export interface CallerIdentity {
  user: string
  groups: string[]
}

/** A caller token as listed: never its hash. */
export interface CallerTokenInfo {
  id: string
  user: string
  groups: string[]
  createdAt: string
}

const DEFAULT_SETTINGS: ServerSettings = { advertiseHost: '127.0.0.1', sans: [], portRange: '6000-6999' }

/** Longest rotation grace accepted, in milliseconds (30 days). */
export const MAX_ROTATION_GRACE_MS = 30 * 24 * 60 * 60 * 1000

/** Emits `change` after state.json was modified (by this instance or another process) and when a token's grace period ends. */
export class Registry extends EventEmitter {
  readonly #store: StateStore
  readonly #log: Logger
  readonly #certPolicy: ServerCertPolicy
  readonly #serverLock: PidLock
  #state: StateFile
  #watcher: fs.FSWatcher | undefined
  #debounce: NodeJS.Timeout | undefined
  #graceTimer: NodeJS.Timeout | undefined
  // Ports recorded but not yet written, and whether a write of them is under way (recordPort).
  readonly #pendingPorts = new Map<string, number>()
  #writingPorts = false

  private constructor (store: StateStore, state: StateFile, log: Logger, certPolicy: ServerCertPolicy) {
    super()
    this.#store = store
    this.#state = state
    this.#log = log
    this.#certPolicy = certPolicy
    this.#serverLock = new PidLock(store.file('server.lock'))
    this.#scheduleGrace()
  }

  /** Opens (creating when allowed) the state directory. Fails with TOWER_ERR_STATE on a missing, corrupt or unwritable one. */
  static open (opts: RegistryOptions): Registry {
    const store = new StateStore(opts.stateDir)
    const log = (opts.logger ?? silentLogger).child({ component: 'registry' })
    const patch = checkSettings(definedOnly(opts.server))
    if (!store.dirExists() || !store.exists()) {
      if (opts.create === false) {
        throw new StateError(`no state directory at ${store.dir}: "tower server" or "tower cluster add" creates one (or pass --state-dir)`)
      }
      store.ensureDir()
      store.withLock(() => {
        if (store.exists()) return
        // A directory whose state.json is gone but whose CA is there keeps
        // that CA; one with half a CA is refused by readStoredCa below.
        if (caAbsent(store)) createStoredCa(store, opts.caValidityDays ?? 3650, log)
        store.writeState({ version: 1, server: { ...DEFAULT_SETTINGS, ...patch }, clusters: Object.create(null) })
        log.info({ stateDir: store.dir }, 'created state directory')
      })
    }
    readStoredCa(store)
    let state = store.read()
    if (Object.keys(patch).length > 0 && JSON.stringify({ ...state.server, ...patch }) !== JSON.stringify(state.server)) {
      state = store.update((s) => { Object.assign(s.server, patch) }).state
    }
    const certPolicy = {
      validityDays: opts.serverCertValidityDays ?? DEFAULT_SERVER_CERT_VALIDITY_DAYS,
      renewBeforeDays: opts.certRenewBeforeDays ?? DEFAULT_CERT_RENEW_BEFORE_DAYS
    }
    return new Registry(store, state, log, certPolicy)
  }

  /** The state directory's absolute path. */
  get stateDir (): string { return this.#store.dir }

  /** Current server settings. */
  get settings (): ServerSettings { return this.#state.server }

  /** The CA certificate and key; TOWER_ERR_STATE naming the file when one is missing or bad. */
  get ca (): CertificateBundle {
    return readStoredCa(this.#store)
  }

  /**
   * The serving certificate for every Tower port, re-issued when the wanted
   * SANs are not all in the stored one or it expires within the renewal
   * window. Compare `certPem` with the previous result to know if it changed.
   */
  serverCertificate (): CertificateBundle {
    return serverCertificate(this.#store, this.ca, this.settings, this.#certPolicy, this.#log)
  }

  /**
   * Marks this process as the server of the state directory (server.lock).
   * Throws TOWER_ERR_SERVER_RUNNING when a live process already is; a lock
   * left by a dead server is taken over.
   */
  claimServer (): void {
    const attempt = this.#serverLock.tryAcquire()
    if (!attempt.acquired) throw new ServerRunningError(this.#store.dir, attempt.holderPid)
  }

  /** Gives up server.lock if this registry holds it. */
  releaseServer (): void {
    this.#serverLock.release()
  }

  /** The pid of the live server using this state directory, or undefined when none runs. */
  serverPid (): number | undefined {
    return this.#serverLock.holderPid()
  }

  /** All clusters, sorted by name. */
  clusters (): ClusterRecord[] {
    return Object.values(this.#state.clusters).sort((a, b) => a.name.localeCompare(b.name))
  }

  /** One cluster, or undefined for an unknown or invalid name. Never throws. */
  find (name: string): ClusterRecord | undefined {
    return findIn(this.#state, name)
  }

  /** One cluster; throws TOWER_ERR_UNKNOWN_CLUSTER. */
  get (name: string): ClusterRecord {
    const c = this.find(name)
    if (c === undefined) throw new UnknownClusterError(name)
    return c
  }

  /** Registers a cluster, allocating its port. Returns the join token, which is not stored. */
  add (name: string, opts: AddOptions = {}): { cluster: ClusterRecord, token: string } {
    const { mode, impersonate } = checkAddOptions(name, opts)
    const token = newToken(TokenPrefix.agent)
    const cluster = this.#mutate((s) => {
      if (Object.hasOwn(s.clusters, name)) throw new ClusterExistsError(name)
      const taken = Object.values(s.clusters).map((c) => c.port).filter((p) => p !== 0)
      let port = opts.port
      if (port === undefined) {
        port = allocatePort(parsePortRange(s.server.portRange), [...taken, ...(s.server.listenPort !== undefined ? [s.server.listenPort] : [])])
      } else if (taken.includes(port)) {
        throw new InvalidArgumentError(`--port ${port} is already used by another cluster`)
      } else if (port === s.server.listenPort) {
        throw new InvalidArgumentError(`--port ${port} is the server's agent endpoint port (--listen)`)
      }
      const now = new Date().toISOString()
      const rec: ClusterRecord = {
        name, uid: randomBytes(16).toString('hex'), mode, port, impersonate, agentTokenHash: hashToken(token), tokenRotatedAt: now, callerTokens: [], revokedSerials: [], createdAt: now
      }
      s.clusters[name] = rec
      return rec
    })
    this.#log.info({ cluster: name, mode, port: cluster.port }, 'cluster added')
    return { cluster, token }
  }

  /** Removes a cluster and every credential issued for it; its agents' credentials are invalid at once. */
  remove (name: string): void {
    this.#mutate((s) => {
      if (findIn(s, name) === undefined) throw new UnknownClusterError(name)
      delete s.clusters[name]
    })
    this.#log.info({ cluster: name }, 'cluster removed')
  }

  /**
   * Replaces the agent join token. Agents that authenticated with the old one
   * are disconnected at once, or when `graceMs` (milliseconds) has passed;
   * until then the old token also still opens new connections.
   */
  rotateAgentToken (name: string, opts: { graceMs?: number } = {}): string {
    const graceMs = opts.graceMs ?? 0
    if (!Number.isSafeInteger(graceMs) || graceMs < 0 || graceMs > MAX_ROTATION_GRACE_MS) {
      throw new InvalidArgumentError(`--grace must be a duration from 0 to 30 days, got ${String(graceMs)} ms`)
    }
    const token = newToken(TokenPrefix.agent)
    this.#mutate((s) => {
      const c = findIn(s, name)
      if (c === undefined) throw new UnknownClusterError(name)
      const now = Date.now()
      if (graceMs > 0) c.previousAgentToken = { hash: c.agentTokenHash, until: new Date(now + graceMs).toISOString() }
      else delete c.previousAgentToken
      c.agentTokenHash = hashToken(token)
      c.tokenRotatedAt = new Date(now).toISOString()
    })
    this.#log.info({ cluster: name, graceMs }, 'agent token rotated')
    return token
  }

  /** Issues a caller token for the cluster's port. Returns it; only its hash is kept. */
  issueCallerToken (name: string, identity: CallerIdentity): { token: string, id: string } {
    const token = newToken(TokenPrefix.caller)
    const id = randomBytes(4).toString('hex')
    this.#mutate((s) => {
      const c = findIn(s, name)
      if (c === undefined) throw new UnknownClusterError(name)
      if (c.callerTokens.length >= MAX_CALLER_TOKENS) throw new InvalidArgumentError(`cluster "${name}" already has ${MAX_CALLER_TOKENS} caller tokens: revoke some first`)
      c.callerTokens.push({ id, hash: hashToken(token), user: identity.user, groups: identity.groups, createdAt: new Date().toISOString() })
    })
    this.#log.info({ cluster: name, tokenId: id, user: identity.user }, 'caller token issued')
    return { token, id }
  }

  /** The caller tokens of a cluster, without their hashes. */
  callerTokens (name: string): CallerTokenInfo[] {
    return this.get(name).callerTokens.map((t) => ({ id: t.id, user: t.user, groups: [...t.groups], createdAt: t.createdAt }))
  }

  /** Revokes a caller token by id (or all with `*`). Returns how many were removed; TOWER_ERR_UNKNOWN_TOKEN for an id that is not there. */
  revokeCallerTokens (name: string, id: string): number {
    const n = this.#mutate((s) => {
      const c = findIn(s, name)
      if (c === undefined) throw new UnknownClusterError(name)
      const before = c.callerTokens.length
      c.callerTokens = id === '*' ? [] : c.callerTokens.filter((t) => t.id !== id)
      if (id !== '*' && c.callerTokens.length === before) throw new UnknownCallerTokenError(name, id)
      return before - c.callerTokens.length
    })
    this.#log.info({ cluster: name, tokenId: id, revoked: n }, 'caller token revoked')
    return n
  }

  /** Adds a client certificate serial (hex) to the cluster's denylist. Returns false when it was already there. */
  revokeCertificate (name: string, serial: string): boolean {
    const hex = normalizeSerial(serial)
    if (hex === undefined) throw new InvalidArgumentError(`--serial must be a certificate serial in hex (1-40 digits, ':' allowed), got ${JSON.stringify(serial)}`)
    const added = this.#mutate((s) => {
      const c = findIn(s, name)
      if (c === undefined) throw new UnknownClusterError(name)
      if (c.revokedSerials.includes(hex)) return false
      if (c.revokedSerials.length >= MAX_REVOKED_SERIALS) throw new InvalidArgumentError(`cluster "${name}" already has ${MAX_REVOKED_SERIALS} revoked serials: re-add the cluster to invalidate every certificate at once`)
      c.revokedSerials.push(hex)
      return true
    })
    this.#log.info({ cluster: name, serial: hex }, 'client certificate revoked')
    return added
  }

  /** Checks an agent's join token. The server answers every refusal the same; `why` is for its log. */
  authenticateAgent (cluster: string, token: string): AgentAuthResult {
    if (!isClusterName(cluster)) return { ok: false, why: 'invalid-name' }
    const c = this.find(cluster)
    if (c === undefined) return { ok: false, why: 'unknown-cluster' }
    const credential = typeof token === 'string' ? matchAgentToken(c, token, Date.now()) : undefined
    return credential === undefined ? { ok: false, why: 'wrong-token' } : { ok: true, credential }
  }

  /**
   * False once the cluster is removed (or re-added), or the token behind
   * `credential` was rotated away and any grace is over. Re-check on `change`.
   */
  agentCredentialValid (cluster: string, credential: string): boolean {
    const c = this.find(cluster)
    return c !== undefined && credentialValid(c, credential, Date.now())
  }

  /** True when `token` is an agent token of cluster `name`. Unknown or invalid names are false. */
  verifyAgentToken (name: string, token: string): boolean {
    return this.authenticateAgent(name, token).ok
  }

  /** The identity of a caller token issued for cluster `name`, or undefined. */
  verifyCallerToken (name: string, token: string): CallerIdentity | undefined {
    const c = this.find(name)
    if (c === undefined || typeof token !== 'string') return undefined
    // Check every entry so the time taken does not reveal which one matched.
    let found: CallerIdentity | undefined
    for (const t of c.callerTokens) {
      if (tokenMatches(token, t.hash)) found = { user: t.user, groups: t.groups }
    }
    return found
  }

  /** Persists the port the OS chose for a cluster in an ephemeral range (see {@link recordPorts}). */
  recordPort (name: string, port: number): void {
    this.recordPorts(new Map([[name, port]]))
  }

  /**
   * Persists the ports the OS chose for clusters in an ephemeral range, in
   * one state write: a server binding 1,000 ephemeral ports writes state.json
   * once, not 1,000 times (each write reads, validates and writes the whole
   * state). Never blocks the event loop and never throws: a failure is logged.
   * Ports recorded while a write is under way go into the next one.
   */
  recordPorts (ports: Map<string, number>): void {
    for (const [name, port] of ports) {
      if (this.find(name)?.port === 0) this.#pendingPorts.set(name, port)
    }
    if (!this.#writingPorts && this.#pendingPorts.size > 0) this.#writePorts()
  }

  #writePorts (): void {
    const batch = new Map(this.#pendingPorts)
    this.#pendingPorts.clear()
    this.#writingPorts = true
    this.#store.updateAsync((s) => {
      for (const [name, port] of batch) {
        const c = findIn(s, name)
        if (c !== undefined && c.port === 0) c.port = port
      }
    }).then(({ state }) => {
      this.#setState(state)
    }, (err: unknown) => {
      this.#log.error({ err, clusters: [...batch.keys()].slice(0, 20), count: batch.size }, 'cannot record cluster ports in state.json; they may change at the next start')
    }).finally(() => {
      this.#writingPorts = false
      if (this.#pendingPorts.size > 0) this.#writePorts()
    })
  }

  /** Writes the runtime status file read by `tower cluster list`. */
  writeStatus (status: Record<string, unknown>): void {
    this.#store.writeText('status.json', JSON.stringify(status, null, 2) + '\n', 0o644)
  }

  /**
   * The status the running server last wrote, or undefined when the process
   * that wrote it is gone (or another server now holds the directory).
   */
  readStatus (): Record<string, any> | undefined {
    return readLiveStatus(this.#store.readText('status.json'), this.serverPid())
  }

  /** Re-reads state.json; emits `change` when it differs. */
  reload (): void {
    this.#setState(this.#store.read())
  }

  /** Watches the directory and reloads on changes by other processes. */
  watch (): void {
    if (this.#watcher !== undefined) return
    this.#watcher = fs.watch(this.#store.dir, (_event, file) => {
      if (file !== 'state.json') return
      clearTimeout(this.#debounce)
      this.#debounce = setTimeout(() => {
        try {
          this.reload()
        } catch (err) {
          this.#log.error({ err }, 'state.json changed but cannot be read; keeping the previous state')
        }
      }, 50)
      this.#debounce.unref()
    })
    this.#watcher.unref()
  }

  /** Stops watching and timers. */
  close (): void {
    this.#watcher?.close()
    this.#watcher = undefined
    clearTimeout(this.#debounce)
    clearTimeout(this.#graceTimer)
  }

  #setState (next: StateFile): void {
    if (JSON.stringify(next) === JSON.stringify(this.#state)) return
    this.#state = next
    this.#scheduleGrace()
    this.emit('change')
  }

  #mutate<T> (fn: (s: StateFile) => T): T {
    const { state, result } = this.#store.update(fn)
    this.#state = state
    this.#scheduleGrace()
    this.emit('change')
    return result
  }

  // A grace period ends without any write: emit `change` then so the server
  // re-checks its agents' credentials.
  #scheduleGrace (): void {
    clearTimeout(this.#graceTimer)
    this.#graceTimer = undefined
    const next = nextGraceEnd(Object.values(this.#state.clusters), Date.now())
    if (next === undefined) return
    this.#graceTimer = setTimeout(() => {
      this.#graceTimer = undefined
      this.#scheduleGrace()
      this.emit('change')
    }, Math.min(Math.max(next - Date.now(), 0) + 1, 0x7fffffff))
    this.#graceTimer.unref()
  }
}

function readLiveStatus (text: string | undefined, holder: number | undefined): Record<string, any> | undefined {
  if (text === undefined) return undefined
  let status: unknown
  try { status = JSON.parse(text) } catch { return undefined }
  if (typeof status !== 'object' || status === null) return undefined
  const pid = (status as { pid?: unknown }).pid
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) return undefined
  const live = holder !== undefined ? holder === pid : processAlive(pid)
  return live ? status as Record<string, any> : undefined
}

function findIn (state: StateFile, name: string): ClusterRecord | undefined {
  return isClusterName(name) && Object.hasOwn(state.clusters, name) ? state.clusters[name] : undefined
}

function definedOnly<T extends object> (o: T | undefined): Partial<T> {
  const out: Partial<T> = {}
  for (const [k, v] of Object.entries(o ?? {})) if (v !== undefined) (out as any)[k] = v
  return out
}
