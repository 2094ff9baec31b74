/**
 * The file-backed state directory: the embedded default registry, so Tower
 * needs no host cluster. Layout (mode 0700; keys 0600):
 *
 *   state.json   clusters, ports, token hashes, server settings
 *   ca.crt/.key  the CA that signs the server and client certificates
 *   server.crt/.key  the serving certificate for every Tower port
 *   status.json  written by the running server: connected agents per cluster
 *
 * The CLI and a running server may both write state.json, so every
 * read-modify-write holds `state.lock` (O_EXCL) and replaces the file with a
 * rename: readers never see half a file.
 */
import fs from 'node:fs'
import path from 'node:path'
import { StateError } from './errors.ts'

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

/** One member cluster. */
export interface ClusterRecord {
  name: string
  mode: ClusterMode
  /** The cluster's TCP port on the server; 0 until first bound in an ephemeral range. */
  port: number
  /** Forward the caller's identity as Impersonate-User/Group (proxy mode). */
  impersonate: boolean
  /** `sha256:<hex>` of the agent join token. */
  agentTokenHash: string
  tokenRotatedAt: string
  callerTokens: CallerTokenRecord[]
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
}

/** Contents of state.json. */
export interface StateFile {
  version: 1
  server: ServerSettings
  clusters: Record<string, ClusterRecord>
}

const LOCK_STALE_MS = 30_000
const LOCK_WAIT_MS = 10_000

/** Low-level access to the files of a state directory. */
export class StateStore {
  /** Absolute path of the directory. */
  readonly dir: string

  constructor (dir: string) {
    this.dir = path.resolve(dir)
  }

  /** Path of a file inside the directory. */
  file (name: string): string {
    return path.join(this.dir, name)
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

  /** True when state.json exists. */
  exists (): boolean {
    return fs.existsSync(this.file('state.json'))
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

  /** Runs `fn` on the current state under the lock and writes what it returns. */
  update<T> (fn: (state: StateFile) => T): T {
    return this.withLock(() => {
      const state = this.read()
      const result = fn(state)
      this.writeText('state.json', JSON.stringify(state, null, 2) + '\n')
      return result
    })
  }

  /** Runs `fn` holding state.lock. Synchronous: the CLI and the server write rarely. */
  withLock<T> (fn: () => T): T {
    const lock = this.file('state.lock')
    const deadline = Date.now() + LOCK_WAIT_MS
    for (;;) {
      try {
        fs.writeFileSync(lock, String(process.pid), { flag: 'wx', mode: 0o600 })
        break
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new StateError(`cannot create ${lock}: ${(err as Error).message}`, { cause: err })
        }
        const age = Date.now() - (fs.statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now())
        if (age > LOCK_STALE_MS) {
          fs.rmSync(lock, { force: true })
          continue
        }
        if (Date.now() > deadline) throw new StateError(`timed out waiting for ${lock}; remove it if no other tower process is running`)
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20)
      }
    }
    try {
      return fn()
    } finally {
      fs.rmSync(lock, { force: true })
    }
  }
}

function validateState (data: unknown, p: string): StateFile {
  const bad = (what: string): never => { throw new StateError(`${p} is corrupt: ${what}`) }
  if (typeof data !== 'object' || data === null) bad('not an object')
  const s = data as StateFile
  if (s.version !== 1) bad(`unsupported version ${String(s.version)}`)
  if (typeof s.server !== 'object' || s.server === null) bad('missing "server"')
  if (typeof s.server.advertiseHost !== 'string') bad('server.advertiseHost is not a string')
  if (!Array.isArray(s.server.sans)) bad('server.sans is not a list')
  if (typeof s.server.portRange !== 'string') bad('server.portRange is not a string')
  if (typeof s.clusters !== 'object' || s.clusters === null) bad('missing "clusters"')
  for (const [name, c] of Object.entries(s.clusters)) {
    if (c.name !== name) bad(`clusters.${name}.name does not match its key`)
    if (c.mode !== 'proxy' && c.mode !== 'passthrough') bad(`clusters.${name}.mode is "${String(c.mode)}"`)
    if (!Number.isInteger(c.port) || c.port < 0 || c.port > 65535) bad(`clusters.${name}.port is invalid`)
    if (typeof c.agentTokenHash !== 'string' || !c.agentTokenHash.startsWith('sha256:')) bad(`clusters.${name}.agentTokenHash is invalid`)
    if (!Array.isArray(c.callerTokens)) bad(`clusters.${name}.callerTokens is not a list`)
  }
  return s
}
