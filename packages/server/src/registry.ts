/**
 * The registry of member clusters, backed by a state directory. It is the
 * only place that knows how tokens are stored and how ports are allocated.
 * The CLI uses it to add clusters and issue credentials; the running server
 * uses it to authenticate and watches it for changes made by the CLI.
 */
import { EventEmitter } from 'node:events'
import fs from 'node:fs'
import { randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import { InvalidArgumentError, type Logger, silentLogger } from '@tower/mux'
import { createCa, issueServerCert, type CertificateBundle } from '@tower/pki'
import { ClusterExistsError, UnknownClusterError } from './errors.ts'
import { allocatePort, parsePortRange } from './ports.ts'
import { StateStore, type ClusterMode, type ClusterRecord, type ServerSettings, type StateFile } from './state-store.ts'
import { hashToken, newToken, tokenMatches, TokenPrefix } from './tokens.ts'

/** Cluster names follow DNS labels, as Kubernetes object names do. */
const NAME_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/

/** Options of {@link Registry.open}. */
export interface RegistryOptions {
  /** Path of the state directory; created (0700) when missing. */
  stateDir: string
  /** Settings to write when the directory is new, or to update when given. */
  server?: Partial<ServerSettings>
  /** CA validity in days for a new state directory. */
  caValidityDays?: number
  logger?: Logger
}

/** Who a caller token stands for. */
export interface CallerIdentity {
  user: string
  groups: string[]
}

const DEFAULT_SETTINGS: ServerSettings = { advertiseHost: '127.0.0.1', sans: [], portRange: '6000-6999' }

/** Emits `change` after state.json was modified, by this instance or by another process. */
export class Registry extends EventEmitter {
  readonly #store: StateStore
  readonly #log: Logger
  #state: StateFile
  #watcher: fs.FSWatcher | undefined
  #debounce: NodeJS.Timeout | undefined

  private constructor (store: StateStore, state: StateFile, log: Logger) {
    super()
    this.#store = store
    this.#state = state
    this.#log = log
  }

  /** Opens (creating when needed) the state directory. Fails with TOWER_ERR_STATE on a corrupt or unwritable one. */
  static open (opts: RegistryOptions): Registry {
    const store = new StateStore(opts.stateDir)
    const log = (opts.logger ?? silentLogger).child({ component: 'registry' })
    store.ensureDir()
    if (!store.exists()) {
      store.withLock(() => {
        if (store.exists()) return
        const state: StateFile = { version: 1, server: { ...DEFAULT_SETTINGS, ...definedOnly(opts.server) }, clusters: {} }
        parsePortRange(state.server.portRange)
        store.writeText('state.json', JSON.stringify(state, null, 2) + '\n')
        log.info({ stateDir: store.dir }, 'created state directory')
      })
    }
    if (store.readText('ca.key') === undefined) {
      const ca = createCa({ commonName: 'tower-ca', validityDays: opts.caValidityDays ?? 3650 })
      store.writeText('ca.key', ca.keyPem, 0o600)
      store.writeText('ca.crt', ca.certPem, 0o644)
      log.info({}, 'created CA')
    }
    let state = store.read()
    const patch = definedOnly(opts.server)
    if (Object.keys(patch).length > 0) {
      if (patch.portRange !== undefined) parsePortRange(patch.portRange)
      state = store.update((s) => { Object.assign(s.server, patch); return s })
    }
    return new Registry(store, state, log)
  }

  /** The state directory's absolute path. */
  get stateDir (): string { return this.#store.dir }

  /** Current server settings. */
  get settings (): ServerSettings { return this.#state.server }

  /** The CA certificate and key. */
  get ca (): CertificateBundle {
    const certPem = this.#store.readText('ca.crt')
    const keyPem = this.#store.readText('ca.key')
    if (certPem === undefined || keyPem === undefined) throw new InvalidArgumentError(`CA missing in ${this.#store.dir}`)
    return { certPem, keyPem }
  }

  /**
   * The serving certificate for every Tower port, re-issued when the wanted
   * SANs are not all in the stored one.
   */
  serverCertificate (): CertificateBundle {
    const names = [this.settings.advertiseHost, ...this.settings.sans, 'localhost', '127.0.0.1']
    const dnsNames = [...new Set(names.filter((n) => !isIp(n)))]
    const ipAddresses = [...new Set(names.filter(isIp))]
    const want = JSON.stringify({ dnsNames, ipAddresses })
    const certPem = this.#store.readText('server.crt')
    const keyPem = this.#store.readText('server.key')
    if (certPem !== undefined && keyPem !== undefined && this.#store.readText('server.sans') === want) return { certPem, keyPem }
    const cert = issueServerCert(this.ca, { commonName: 'tower-server', dnsNames, ipAddresses, validityDays: 825 })
    this.#store.writeText('server.key', cert.keyPem, 0o600)
    this.#store.writeText('server.crt', cert.certPem, 0o644)
    this.#store.writeText('server.sans', want, 0o644)
    this.#log.info({ dnsNames, ipAddresses }, 'issued server certificate')
    return cert
  }

  /** All clusters, sorted by name. */
  clusters (): ClusterRecord[] {
    return Object.values(this.#state.clusters).sort((a, b) => a.name.localeCompare(b.name))
  }

  /** One cluster; throws TOWER_ERR_UNKNOWN_CLUSTER. */
  get (name: string): ClusterRecord {
    const c = this.#state.clusters[name]
    if (c === undefined) throw new UnknownClusterError(name)
    return c
  }

  /** Registers a cluster, allocating its port. Returns the join token, which is not stored. */
  add (name: string, opts: { mode?: ClusterMode, impersonate?: boolean, port?: number } = {}): { cluster: ClusterRecord, token: string } {
    if (!NAME_RE.test(name)) throw new InvalidArgumentError(`cluster name "${name}" must be a DNS label: lowercase letters, digits and '-', at most 63 characters`)
    const mode = opts.mode ?? 'proxy'
    if (mode !== 'proxy' && mode !== 'passthrough') throw new InvalidArgumentError(`mode must be proxy or passthrough, got "${String(mode)}"`)
    if (opts.impersonate === true && mode !== 'proxy') throw new InvalidArgumentError('impersonate needs mode proxy: passthrough cannot see the request')
    const token = newToken(TokenPrefix.agent)
    const cluster = this.#mutate((s) => {
      if (s.clusters[name] !== undefined) throw new ClusterExistsError(name)
      const taken = Object.values(s.clusters).map((c) => c.port).filter((p) => p !== 0)
      let port = opts.port
      if (port === undefined) {
        port = allocatePort(parsePortRange(s.server.portRange), taken)
      } else if (taken.includes(port)) {
        throw new InvalidArgumentError(`port ${port} is already used by another cluster`)
      }
      const now = new Date().toISOString()
      const rec: ClusterRecord = { name, mode, port, impersonate: opts.impersonate === true, agentTokenHash: hashToken(token), tokenRotatedAt: now, callerTokens: [], createdAt: now }
      s.clusters[name] = rec
      return rec
    })
    this.#log.info({ cluster: name, mode, port: cluster.port }, 'cluster added')
    return { cluster, token }
  }

  /** Removes a cluster and every credential issued for it. */
  remove (name: string): void {
    this.#mutate((s) => {
      if (s.clusters[name] === undefined) throw new UnknownClusterError(name)
      delete s.clusters[name]
    })
    this.#log.info({ cluster: name }, 'cluster removed')
  }

  /** Replaces the agent join token; the old one stops working for new connections at once. */
  rotateAgentToken (name: string): string {
    const token = newToken(TokenPrefix.agent)
    this.#mutate((s) => {
      const c = s.clusters[name]
      if (c === undefined) throw new UnknownClusterError(name)
      c.agentTokenHash = hashToken(token)
      c.tokenRotatedAt = new Date().toISOString()
    })
    this.#log.info({ cluster: name }, 'agent token rotated')
    return token
  }

  /** Issues a caller token for the cluster's port. Returns it; only its hash is kept. */
  issueCallerToken (name: string, identity: CallerIdentity): { token: string, id: string } {
    const token = newToken(TokenPrefix.caller)
    const id = randomBytes(4).toString('hex')
    this.#mutate((s) => {
      const c = s.clusters[name]
      if (c === undefined) throw new UnknownClusterError(name)
      c.callerTokens.push({ id, hash: hashToken(token), user: identity.user, groups: identity.groups, createdAt: new Date().toISOString() })
    })
    this.#log.info({ cluster: name, tokenId: id, user: identity.user }, 'caller token issued')
    return { token, id }
  }

  /** Revokes caller tokens by id (or all with `*`). Returns how many were removed. */
  revokeCallerTokens (name: string, id: string): number {
    return this.#mutate((s) => {
      const c = s.clusters[name]
      if (c === undefined) throw new UnknownClusterError(name)
      const before = c.callerTokens.length
      c.callerTokens = id === '*' ? [] : c.callerTokens.filter((t) => t.id !== id)
      return before - c.callerTokens.length
    })
  }

  /** True when `token` is the agent token of cluster `name`. Unknown clusters are false. */
  verifyAgentToken (name: string, token: string): boolean {
    const c = this.#state.clusters[name]
    return c !== undefined && tokenMatches(token, c.agentTokenHash)
  }

  /** The identity of a caller token issued for cluster `name`, or undefined. */
  verifyCallerToken (name: string, token: string): CallerIdentity | undefined {
    const c = this.#state.clusters[name]
    if (c === undefined) return undefined
    // Check every entry so the time taken does not reveal which one matched.
    let found: CallerIdentity | undefined
    for (const t of c.callerTokens) {
      if (tokenMatches(token, t.hash)) found = { user: t.user, groups: t.groups }
    }
    return found
  }

  /** Persists the port the OS chose for a cluster in an ephemeral range. */
  recordPort (name: string, port: number): void {
    this.#mutate((s) => {
      const c = s.clusters[name]
      if (c !== undefined) c.port = port
    })
  }

  /** Writes the runtime status file read by `tower cluster list`. */
  writeStatus (status: Record<string, unknown>): void {
    this.#store.writeText('status.json', JSON.stringify(status, null, 2) + '\n', 0o644)
  }

  /** The status the running server last wrote, if any. */
  readStatus (): Record<string, any> | undefined {
    const text = this.#store.readText('status.json')
    if (text === undefined) return undefined
    try { return JSON.parse(text) } catch { return undefined }
  }

  /** Re-reads state.json; emits `change` when it differs. */
  reload (): void {
    const next = this.#store.read()
    if (JSON.stringify(next) === JSON.stringify(this.#state)) return
    this.#state = next
    this.emit('change')
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

  /** Stops watching. */
  close (): void {
    this.#watcher?.close()
    this.#watcher = undefined
    clearTimeout(this.#debounce)
  }

  #mutate<T> (fn: (s: StateFile) => T): T {
    let result!: T
    this.#state = this.#store.update((s) => { result = fn(s); return s })
    this.emit('change')
    return result
  }
}

function isIp (s: string): boolean {
  return isIP(s) !== 0
}

function definedOnly<T extends object> (o: T | undefined): Partial<T> {
  const out: Partial<T> = {}
  for (const [k, v] of Object.entries(o ?? {})) if (v !== undefined) (out as any)[k] = v
  return out
}
