/**
 * The file backend of the registry: member clusters in a state directory,
 * so Tower needs no host cluster. It is the only place that knows how the
 * state directory stores tokens and allocates ports. The CLI uses it to add
 * clusters and issue credentials; the running server claims it (server.lock)
 * and watches state.json for changes the CLI makes.
 *
 * Reads come from the last parsed state.json and go through the shared rules
 * in records.ts. Writes hold state.lock (waiting with timers, never blocking
 * the event loop), replace state.json, and emit `change`.
 */
import { EventEmitter } from 'node:events'
import { randomBytes } from 'node:crypto'
import { InvalidArgumentError, type Logger, silentLogger } from '@tower/mux'
import type { CertificateBundle } from '@tower/pki'
import { ClusterExistsError, ServerRunningError, StateError, UnknownCallerTokenError, UnknownClusterError } from '../errors.ts'
import type { CallerIdentity, CallerTokenInfo, ClusterEndpoint, ClusterRegistry, ServerStatusReport } from './api.ts'
import { DEFAULT_CERT_RENEW_BEFORE_DAYS, DEFAULT_SERVER_CERT_VALIDITY_DAYS, type ServerCertPolicy } from './certificates.ts'
import { caAbsent, createStoredCa, readStoredCa, serverCertificate } from './file-certificates.ts'
import { readStatusFile, writeStatusFile } from './file-status.ts'
import { StateWatcher } from './file-watch.ts'
import { checkAddOptions, checkGraceMs, checkSerial, checkSettings, type AddOptions } from './input.ts'
import { PidLock } from '../pid-lock.ts'
import { allocatePort, parsePortRange } from './ports.ts'
import {
  authenticateAgentIn, callerTokensOf, credentialValidIn, findCluster, nextGraceEnd, verifyCallerTokenIn, type AgentAuthResult
} from './records.ts'
import { StateStore, type ClusterRecord, type ServerSettings, type StateFile } from '../state-store.ts'
import { MAX_CALLER_TOKENS, MAX_REVOKED_SERIALS } from '../state-validate.ts'
import { hashToken, newToken, TokenPrefix } from './tokens.ts'

/** Options of {@link FileRegistry.open}. */
export interface FileRegistryOptions {
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

const DEFAULT_SETTINGS: ServerSettings = { advertiseHost: '127.0.0.1', sans: [], portRange: '6000-6999' }

/** Emits `change` after state.json was modified (by this instance or another process) and when a token's grace period ends. */
export class FileRegistry extends EventEmitter implements ClusterRegistry {
  /** Which backend this is. */
  readonly kind = 'file' as const
  readonly #store: StateStore
  readonly #log: Logger
  readonly #certPolicy: ServerCertPolicy
  readonly #serverLock: PidLock
  readonly #watcher: StateWatcher
  #state: StateFile
  #graceTimer: NodeJS.Timeout | undefined
  // Ports recorded but not yet written, and whether a write of them is under way (recordPorts).
  readonly #pendingPorts = new Map<string, number>()
  #writingPorts = false

  private constructor (store: StateStore, state: StateFile, log: Logger, certPolicy: ServerCertPolicy) {
    super()
    this.#store = store
    this.#state = state
    this.#log = log
    this.#certPolicy = certPolicy
    this.#serverLock = new PidLock(store.file('server.lock'))
    this.#watcher = new StateWatcher(store.dir, () => { this.reload() }, log)
    this.#scheduleGrace()
  }

  /** Opens (creating when allowed) the state directory. Fails with TOWER_ERR_STATE on a missing, corrupt or unwritable one. */
  static async open (opts: FileRegistryOptions): Promise<FileRegistry> {
    const store = new StateStore(opts.stateDir)
    const log = (opts.logger ?? silentLogger).child({ component: 'registry' })
    const patch = checkSettings(definedOnly(opts.server))
    if (!store.dirExists() || !store.exists()) {
      if (opts.create === false) {
        throw new StateError(`no state directory at ${store.dir}: "tower server" or "tower cluster add" creates one (or pass --state-dir)`)
      }
      store.ensureDir()
      await store.withLockAsync(() => {
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
      state = (await store.updateAsync((s) => { Object.assign(s.server, patch) })).state
    }
    const certPolicy = {
      validityDays: opts.serverCertValidityDays ?? DEFAULT_SERVER_CERT_VALIDITY_DAYS,
      renewBeforeDays: opts.certRenewBeforeDays ?? DEFAULT_CERT_RENEW_BEFORE_DAYS
    }
    return new FileRegistry(store, state, log, certPolicy)
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
   * Marks this process as the server of the state directory (server.lock)
   * and starts watching state.json. Throws TOWER_ERR_SERVER_RUNNING when a
   * live process already is; a lock left by a dead server is taken over.
   */
  async claimServer (): Promise<void> {
    const attempt = this.#serverLock.tryAcquire()
    if (!attempt.acquired) throw new ServerRunningError(this.#store.dir, attempt.holderPid)
    this.#watcher.start()
    // Changes made between open and the watch would otherwise be missed.
    try {
      this.reload()
    } catch (err) {
      this.#log.error({ err }, 'state.json cannot be read; serving the state read at open')
    }
  }

  /** Stops watching and gives up server.lock if this registry holds it. */
  async releaseServer (): Promise<void> {
    this.#watcher.stop()
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
    return findCluster(this.#state.clusters, name)
  }

  /** One cluster; throws TOWER_ERR_UNKNOWN_CLUSTER. */
  get (name: string): ClusterRecord {
    const c = this.find(name)
    if (c === undefined) throw new UnknownClusterError(name)
    return c
  }

  /** The advertise host and the stored port, or the port the live server bound while the stored one is 0. */
  endpoint (name: string): ClusterEndpoint | undefined {
    const c = this.find(name)
    if (c === undefined) return undefined
    const port = c.port !== 0 ? c.port : readStatusFile(this.#store, this.serverPid())?.clusters[c.name]?.port ?? undefined
    return port === undefined ? undefined : { host: this.settings.advertiseHost, port }
  }

  /** Registers a cluster, allocating its port. Returns the join token, which is not stored. */
  async add (name: string, opts: AddOptions = {}): Promise<{ cluster: ClusterRecord, token: string }> {
    const { mode, impersonate } = checkAddOptions(name, opts)
    const token = newToken(TokenPrefix.agent)
    const cluster = await this.#mutate((s) => {
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
  async remove (name: string): Promise<void> {
    await this.#mutate((s) => {
      if (findCluster(s.clusters, name) === undefined) throw new UnknownClusterError(name)
      delete s.clusters[name]
    })
    this.#log.info({ cluster: name }, 'cluster removed')
  }

  /**
   * Replaces the agent join token. Agents that authenticated with the old one
   * are disconnected at once, or when `graceMs` (milliseconds) has passed;
   * until then the old token also still opens new connections.
   */
  async rotateAgentToken (name: string, opts: { graceMs?: number } = {}): Promise<string> {
    const graceMs = checkGraceMs(opts.graceMs)
    const token = newToken(TokenPrefix.agent)
    await this.#mutate((s) => {
      const c = findCluster(s.clusters, name)
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

  /** Always undefined: the state directory keeps only the token's hash. */
  async agentToken (_name: string): Promise<string | undefined> {
    return undefined
  }

  /** Issues a caller token for the cluster's port. Returns it; only its hash is kept. */
  async issueCallerToken (name: string, identity: CallerIdentity): Promise<{ token: string, id: string }> {
    const token = newToken(TokenPrefix.caller)
    const id = randomBytes(4).toString('hex')
    await this.#mutate((s) => {
      const c = findCluster(s.clusters, name)
      if (c === undefined) throw new UnknownClusterError(name)
      if (c.callerTokens.length >= MAX_CALLER_TOKENS) throw new InvalidArgumentError(`cluster "${name}" already has ${MAX_CALLER_TOKENS} caller tokens: revoke some first`)
      c.callerTokens.push({ id, hash: hashToken(token), user: identity.user, groups: identity.groups, createdAt: new Date().toISOString() })
    })
    this.#log.info({ cluster: name, tokenId: id, user: identity.user }, 'caller token issued')
    return { token, id }
  }

  /** The caller tokens of a cluster, without their hashes; throws TOWER_ERR_UNKNOWN_CLUSTER. */
  callerTokens (name: string): CallerTokenInfo[] {
    return callerTokensOf(this.get(name))
  }

  /** Revokes a caller token by id (or all with `*`). Returns how many were removed; TOWER_ERR_UNKNOWN_TOKEN for an id that is not there. */
  async revokeCallerTokens (name: string, id: string): Promise<number> {
    const n = await this.#mutate((s) => {
      const c = findCluster(s.clusters, name)
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
  async revokeCertificate (name: string, serial: string): Promise<boolean> {
    const hex = checkSerial(serial)
    const added = await this.#mutate((s) => {
      const c = findCluster(s.clusters, name)
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
    return authenticateAgentIn(this.find(cluster), cluster, token, Date.now())
  }

  /**
   * False once the cluster is removed (or re-added), or the token behind
   * `credential` was rotated away and any grace is over. Re-check on `change`.
   */
  agentCredentialValid (cluster: string, credential: string): boolean {
    return credentialValidIn(this.find(cluster), credential, Date.now())
  }

  /** The identity of a caller token issued for cluster `name`, or undefined. */
  verifyCallerToken (name: string, token: string): CallerIdentity | undefined {
    return verifyCallerTokenIn(this.find(name), token)
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
        const c = findCluster(s.clusters, name)
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

  /** Writes status.json, read by `tower cluster list` and `tower kubeconfig`. Never throws: a failure is logged. */
  reportStatus (report: ServerStatusReport): void {
    try {
      writeStatusFile(this.#store, report)
    } catch (err) {
      this.#log.warn({ err }, 'cannot write status.json; "tower cluster list" shows the previous report')
    }
  }

  /**
   * The status the running server last wrote, or undefined when the process
   * that wrote it is gone (or another server now holds the directory).
   */
  async readStatus (): Promise<ServerStatusReport | undefined> {
    return readStatusFile(this.#store, this.serverPid())
  }

  /** Re-reads state.json; emits `change` when it differs. */
  reload (): void {
    this.#setState(this.#store.read())
  }

  /** Stops watching and timers. A later claimServer starts watching again. */
  async close (): Promise<void> {
    this.#watcher.stop()
    clearTimeout(this.#graceTimer)
    this.#graceTimer = undefined
  }

  #setState (next: StateFile): void {
    if (JSON.stringify(next) === JSON.stringify(this.#state)) return
    this.#state = next
    this.#scheduleGrace()
    this.emit('change')
  }

  async #mutate<T> (fn: (s: StateFile) => T): Promise<T> {
    const { state, result } = await this.#store.updateAsync(fn)
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

function definedOnly<T extends object> (o: T | undefined): Partial<T> {
  const out: Partial<T> = {}
  for (const [k, v] of Object.entries(o ?? {})) if (v !== undefined) (out as any)[k] = v
  return out
}
