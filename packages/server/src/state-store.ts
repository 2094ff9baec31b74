/**
 * The file-backed state directory: the embedded default registry, so Tower
 * needs no host cluster. Layout (mode 0700; keys 0600):
 *
 *   state.json   clusters, ports, token hashes, server settings
 *   ca.crt/.key  the CA that signs the server and client certificates
 *   server.crt/.key  the serving certificate for every Tower port
 *   status.json  written by the running server: connected agents per cluster
 *   server.lock  held by the running server (see PidLock)
 *
 * The CLI and a running server may both write state.json, so every
 * read-modify-write holds `state.lock` and replaces the file with a rename:
 * readers never see half a file. The CLI waits for the lock synchronously;
 * the server waits with timers, so its event loop is never blocked. Every
 * state is validated before it is written, with the validator reads use.
 */
import fs from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { StateError } from './errors.ts'
import { PidLock } from './pid-lock.ts'
import { validateState } from './state-validate.ts'

/** How a cluster's port carries traffic. */
export type ClusterMode = 'proxy' | 'passthrough'

/** A caller token issued for one cluster (kubeconfig `--token`). */
export interface CallerTokenRecord {
  /** Short random id, for listing and revocation. */
  id: string
  /** `sha256:<hex>` of the token. */
  hash: string
  /** The identity the token stands for (used with impersonation). */
  user: string
  /** Groups of that identity. */
  groups: string[]
  /** ISO time of issue. */
  createdAt: string
}

/** The agent token a rotation replaced, still accepted during a grace period. */
export interface PreviousAgentToken {
  /** `sha256:<hex>` of the old token. */
  hash: string
  /** ISO time at which the old token stops working and its agents are disconnected. */
  until: string
}

/** One member cluster. */
export interface ClusterRecord {
  name: string
  /**
   * Random id of this registration, made at add and written into every client
   * certificate; a cluster removed and re-added gets a new one. Absent on
   * clusters added before uids existed.
   */
  uid?: string
  mode: ClusterMode
  /** The cluster's TCP port on the server; 0 until first bound in an ephemeral range. */
  port: number
  /** Forward the caller's identity as Impersonate-User/Group (proxy mode). */
  impersonate: boolean
  /** `sha256:<hex>` of the agent join token. */
  agentTokenHash: string
  /** ISO time of the last rotation (or of the add). */
  tokenRotatedAt: string
  /** The token replaced by the last rotation while its grace lasts. */
  previousAgentToken?: PreviousAgentToken
  callerTokens: CallerTokenRecord[]
  /** Serials of revoked client certificates, normalised (see normalizeSerial). */
  revokedSerials: string[]
  /** ISO time of the add. */
  createdAt: string
}

/** Server settings persisted so `tower kubeconfig` knows the public address. */
export interface ServerSettings {
  /** Host name or IP that kubeconfigs point at. */
  advertiseHost: string
  /** Extra SANs of the serving certificate. */
  sans: string[]
  /** The cluster port range, as written (`6000-6999`, or `0`). */
  portRange: string
  /** The agent endpoint's port, as the server was last started with; no cluster may use it. */
  listenPort?: number
}

/** Contents of state.json. */
export interface StateFile {
  version: 1
  server: ServerSettings
  clusters: Record<string, ClusterRecord>
}

/** How long a writer waits for state.lock before giving up, in milliseconds. */
const LOCK_WAIT_MS = 10_000
/** Pause between two attempts at state.lock, in milliseconds. */
const LOCK_RETRY_MS = 20

/** Low-level access to the files of a state directory. */
export class StateStore {
  /** Absolute path of the directory. */
  readonly dir: string
  readonly #lock: PidLock

  constructor (dir: string) {
    this.dir = path.resolve(dir)
    this.#lock = new PidLock(this.file('state.lock'))
  }

  /** Path of a file inside the directory. */
  file (name: string): string {
    return path.join(this.dir, name)
  }

  /** True when the directory exists. */
  dirExists (): boolean {
    return fs.statSync(this.dir, { throwIfNoEntry: false })?.isDirectory() === true
  }

  /** Creates the directory (0700) if needed and checks it is writable. */
  ensureDir (): void {
    try {
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 })
      fs.accessSync(this.dir, fs.constants.W_OK | fs.constants.R_OK)
    } catch (err) {
      throw new StateError(`state directory ${this.dir} is not usable: ${(err as Error).message}`, { cause: err })
    }
  }

  /** True when `name` exists in the directory. */
  has (name: string): boolean {
    return fs.existsSync(this.file(name))
  }

  /** True when state.json exists. */
  exists (): boolean {
    return this.has('state.json')
  }

  /** Reads and validates state.json. */
  read (): StateFile {
    const p = this.file('state.json')
    let text: string
    try {
      text = fs.readFileSync(p, 'utf8')
    } catch (err) {
      throw new StateError(`cannot read ${p}: ${(err as Error).message}`, { cause: err })
    }
    let data: unknown
    try {
      data = JSON.parse(text)
    } catch (err) {
      throw new StateError(`${p} is corrupt (not JSON: ${(err as Error).message}); restore it from a backup or move it away to start fresh`, { cause: err })
    }
    return validateState(data, p)
  }

  /** Validates `state` as a read would, then writes it. The caller holds the lock. */
  writeState (state: StateFile): void {
    const text = JSON.stringify(state, null, 2) + '\n'
    try {
      validateState(JSON.parse(text), 'the new state')
    } catch (err) {
      throw new StateError(`refusing to write ${this.file('state.json')}: ${(err as Error).message}`, { cause: err })
    }
    this.writeText('state.json', text)
  }

  /** Reads a text file of the directory, or undefined when it is missing. */
  readText (name: string): string | undefined {
    try {
      return fs.readFileSync(this.file(name), 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw new StateError(`cannot read ${this.file(name)}: ${(err as Error).message}`, { cause: err })
    }
  }

  /** Atomically replaces a file (write to a temp name, fsync, rename). */
  writeText (name: string, text: string, mode = 0o600): void {
    const p = this.file(name)
    const tmp = `${p}.${process.pid}.tmp`
    try {
      const fd = fs.openSync(tmp, 'w', mode)
      try {
        fs.writeFileSync(fd, text)
        fs.fsyncSync(fd)
      } finally {
        fs.closeSync(fd)
      }
      fs.renameSync(tmp, p)
    } catch (err) {
      fs.rmSync(tmp, { force: true })
      throw new StateError(`cannot write ${p}: ${(err as Error).message}`, { cause: err })
    }
  }

  /** Runs `fn` on the current state under the lock and writes the state it leaves, if changed. Blocks while waiting: for the CLI. */
  update<T> (fn: (state: StateFile) => T): { state: StateFile, result: T } {
    return this.withLock(() => {
      const state = this.read()
      const before = JSON.stringify(state)
      const result = fn(state)
      if (JSON.stringify(state) !== before) this.writeState(state)
      return { state, result }
    })
  }

  /** As update, but waits for the lock with timers, never blocking the event loop: for the server. */
  async updateAsync<T> (fn: (state: StateFile) => T): Promise<{ state: StateFile, result: T }> {
    return await this.withLockAsync(() => {
      const state = this.read()
      const before = JSON.stringify(state)
      const result = fn(state)
      if (JSON.stringify(state) !== before) this.writeState(state)
      return { state, result }
    })
  }

  /** Runs `fn` holding state.lock, waiting synchronously (up to 10 s) while a live process holds it. */
  withLock<T> (fn: () => T): T {
    const deadline = Date.now() + LOCK_WAIT_MS
    while (!this.#tryLock(deadline)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, LOCK_RETRY_MS)
    try {
      return fn()
    } finally {
      this.#lock.release()
    }
  }

  /** Runs `fn` holding state.lock, waiting with timers (up to 10 s) while a live process holds it. */
  async withLockAsync<T> (fn: () => T): Promise<T> {
    const deadline = Date.now() + LOCK_WAIT_MS
    while (!this.#tryLock(deadline)) await sleep(LOCK_RETRY_MS)
    try {
      return fn()
    } finally {
      this.#lock.release()
    }
  }

  #tryLock (deadline: number): boolean {
    let attempt
    try {
      attempt = this.#lock.tryAcquire()
    } catch (err) {
      throw new StateError(`cannot create ${this.#lock.path}: ${(err as Error).message}`, { cause: err })
    }
    if (attempt.acquired) return true
    if (Date.now() > deadline) {
      throw new StateError(`timed out waiting for ${this.#lock.path}, held by process ${String(attempt.holderPid ?? 'unknown')}`)
    }
    return false
  }
}
