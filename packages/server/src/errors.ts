/**
 * Errors of the server package. Every class extends TowerError and carries a
 * stable code; the README lists them all.
 */
import { TowerError } from '@tower/mux'

export { TowerError, InvalidArgumentError } from '@tower/mux'

/** The state directory is missing pieces, corrupt, or not writable. */
export class StateError extends TowerError {
  constructor (message: string, options?: ErrorOptions) {
    super(message, 'TOWER_ERR_STATE', options)
  }
}

// A name or id from outside, as an error message shows it: any type, bounded length.
function shown (v: unknown): string {
  if (typeof v !== 'string') return `(${typeof v})`
  return v.length > 100 ? `${v.slice(0, 100)}…` : v
}

/** No cluster of that name is registered. */
export class UnknownClusterError extends TowerError {
  constructor (name: unknown) {
    super(`unknown cluster "${shown(name)}" (see: tower cluster list)`, 'TOWER_ERR_UNKNOWN_CLUSTER')
  }
}

/** A cluster of that name is already registered. */
export class ClusterExistsError extends TowerError {
  constructor (name: unknown) {
    super(`cluster "${shown(name)}" already exists`, 'TOWER_ERR_CLUSTER_EXISTS')
  }
}

/** Every port of the configured range is taken by a cluster. */
export class PortRangeExhaustedError extends TowerError {
  constructor (range: string) {
    super(`no free port left in the cluster port range ${range}; widen --port-range or remove a cluster`, 'TOWER_ERR_PORT_RANGE_EXHAUSTED')
  }
}

/** The cluster has no connected agent to carry the request. */
export class NoAgentError extends TowerError {
  /**
   * Since when the cluster has had no agent, in ms since epoch: when its last
   * agent left, or when the server started if none has connected since.
   */
  readonly offlineSince: number

  constructor (cluster: string, offlineSince: number = Date.now()) {
    super(`no agent connected for cluster "${cluster}"`, 'TOWER_ERR_NO_AGENT')
    this.offlineSince = offlineSince
  }
}

/** Another live `tower server` already uses the state directory. */
export class ServerRunningError extends TowerError {
  /** Pid of the server holding the directory, when known. */
  readonly pid: number | undefined

  constructor (stateDir: string, pid: number | undefined) {
    super(`a tower server (pid ${pid ?? 'unknown'}) is already running with the state directory ${stateDir}; stop it first, or use another --state-dir`, 'TOWER_ERR_SERVER_RUNNING')
    this.pid = pid
  }
}

/** No caller token of that id exists for the cluster. */
export class UnknownCallerTokenError extends TowerError {
  constructor (cluster: unknown, id: unknown) {
    super(`cluster "${shown(cluster)}" has no caller token with id "${shown(id)}" (see: tower cluster tokens ${shown(cluster)})`, 'TOWER_ERR_UNKNOWN_TOKEN')
  }
}
