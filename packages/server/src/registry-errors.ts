/**
 * Errors of the registry that errors.ts does not have yet. Every class
 * extends TowerError and carries a stable code; the README lists them.
 * (Kept apart only while errors.ts is being edited by another change; they
 * belong in errors.ts.)
 */
import { TowerError } from '@tower/mux'

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
  constructor (cluster: string, id: string) {
    super(`cluster "${cluster}" has no caller token with id "${id}" (see: tower cluster tokens ${cluster})`, 'TOWER_ERR_UNKNOWN_TOKEN')
  }
}
