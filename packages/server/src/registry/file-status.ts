/**
 * status.json: what the running server last reported (its pid, agent port,
 * and per cluster the bound port and connected agents), read by `tower
 * cluster list` and `tower kubeconfig` in other processes.
 *
 * A report outlives the process that wrote it, so a reader trusts it only
 * while that process is the live holder of server.lock (or, with no lock
 * holder known, while the pid is alive). The file is read as hostile input:
 * every field is checked and the result is a fresh object whose cluster map
 * has no prototype.
 */
import { processAlive } from '../pid-lock.ts'
import type { AgentStatus, ClusterRuntimeStatus, ServerStatusReport } from './api.ts'
import type { StateStore } from '../state-store.ts'

/** Name of the status file inside the state directory. */
export const STATUS_FILE = 'status.json'

/** Writes the report (mode 0644: it holds no secret). Throws StateError when the file cannot be written. */
export function writeStatusFile (store: StateStore, report: ServerStatusReport): void {
  store.writeText(STATUS_FILE, JSON.stringify(report, null, 2) + '\n', 0o644)
}

/**
 * The last report, or undefined when there is none, it is unreadable, or
 * the process that wrote it is no longer the server (`holder`: the pid
 * holding server.lock, if any).
 */
export function readStatusFile (store: StateStore, holder: number | undefined): ServerStatusReport | undefined {
  let text: string | undefined
  try {
    text = store.readText(STATUS_FILE)
  } catch {
    return undefined
  }
  if (text === undefined) return undefined
  const report = parseStatus(text)
  if (report === undefined) return undefined
  const live = holder !== undefined ? holder === report.pid : processAlive(report.pid)
  return live ? report : undefined
}

/** Parses and checks status.json text; undefined when it is not a report. */
export function parseStatus (text: string): ServerStatusReport | undefined {
  let data: unknown
  try { data = JSON.parse(text) } catch { return undefined }
  if (!isObject(data)) return undefined
  const pid = data.pid
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) return undefined
  const clusters: Record<string, ClusterRuntimeStatus> = Object.create(null)
  if (isObject(data.clusters)) {
    for (const [name, value] of Object.entries(data.clusters)) {
      const c = parseCluster(value)
      if (c !== undefined) clusters[name] = c
    }
  }
  const report: ServerStatusReport = {
    pid,
    updatedAt: typeof data.updatedAt === 'string' ? data.updatedAt : '',
    agentPort: isPort(data.agentPort) ? data.agentPort : null,
    clusters
  }
  if (typeof data.stoppedAt === 'string') report.stoppedAt = data.stoppedAt
  return report
}

function parseCluster (v: unknown): ClusterRuntimeStatus | undefined {
  if (!isObject(v)) return undefined
  const agents: AgentStatus[] = []
  if (Array.isArray(v.agents)) {
    for (const a of v.agents) {
      if (isObject(a) && typeof a.id === 'string' && typeof a.remote === 'string' && typeof a.since === 'string') agents.push({ id: a.id, remote: a.remote, since: a.since })
    }
  }
  const c: ClusterRuntimeStatus = { port: isPort(v.port) ? v.port : null, listening: v.listening === true, agents }
  if (typeof v.kubernetesVersion === 'string') c.kubernetesVersion = v.kubernetesVersion
  if (typeof v.lastAgentLeftAt === 'string') c.lastAgentLeftAt = v.lastAgentLeftAt
  return c
}

function isPort (v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= 65535
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
