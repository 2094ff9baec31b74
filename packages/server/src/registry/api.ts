/**
 * The registry contract: what the server and the CLI need from wherever
 * clusters are kept. Two backends implement it:
 *
 *   file        FileRegistry (this package): the state directory, the embedded default
 *   kubernetes  KubernetesRegistry (@tower/controller): Cluster resources and Secrets in a host cluster
 *
 * Reads are synchronous and come from the backend's in-memory view (the
 * parsed state.json, or the informers' caches), so the hot path that
 * authenticates an agent or a caller never waits on I/O. Every read takes
 * names that came from outside (headers, flags) and never throws for them:
 * an invalid or unknown name is simply undefined / refused.
 *
 * Writes are asynchronous and resolve once the backend has stored them; the
 * backend then emits `change`, which is also emitted for changes made by
 * another process (the CLI, another replica).
 */
import type { CertificateBundle } from '@tower/pki'
import type { AgentAuthResult } from './records.ts'
import type { AddOptions } from './input.ts'
import type { ClusterRecord, ServerSettings } from '../state-store.ts'

/** Which backend a registry is. */
export type RegistryKind = 'file' | 'kubernetes'

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

/** Where callers reach a cluster: the host and port a kubeconfig names. */
export interface ClusterEndpoint {
  host: string
  port: number
}

/** One connected agent, as the server reports it. */
export interface AgentStatus {
  id: string
  remote: string
  /** ISO time the session was established. */
  since: string
}

/** What the running server knows about one cluster. */
export interface ClusterRuntimeStatus {
  /** The bound port, or null when the listener is not up. */
  port: number | null
  listening: boolean
  agents: AgentStatus[]
  /** gitVersion read through the tunnel (GET /version) when an agent connected; absent until known. */
  kubernetesVersion?: string
  /** ISO time the last agent of this cluster disconnected, while none is connected. */
  lastAgentLeftAt?: string
}

/** What the running server reports to its registry (status.json, or Cluster conditions). */
export interface ServerStatusReport {
  pid: number
  updatedAt: string
  /** The agent endpoint's port, or null once stopped. */
  agentPort: number | null
  stoppedAt?: string
  /** True while the server drains (SIGTERM): it admits no agents and its routes say not ready. */
  draining?: boolean
  clusters: Record<string, ClusterRuntimeStatus>
}

/** The contract both backends implement. Emits `change` (no arguments). */
export interface ClusterRegistry {
  readonly kind: RegistryKind

  /** Advertise host, SANs, port range, agent endpoint port. */
  readonly settings: ServerSettings
  /** The CA that signs the serving and client certificates. */
  readonly ca: CertificateBundle
  /** The serving certificate for every Tower port; compare `certPem` to know if it changed. */
  serverCertificate: () => CertificateBundle

  // --- reads (synchronous, never throw for a hostile name) -------------------
  /** All clusters, sorted by name. */
  clusters: () => ClusterRecord[]
  /** One cluster, or undefined for an unknown or invalid name. */
  find: (name: string) => ClusterRecord | undefined
  /** One cluster; throws TOWER_ERR_UNKNOWN_CLUSTER. */
  get: (name: string) => ClusterRecord
  /** The host and port callers use for the cluster, or undefined while it has no port. */
  endpoint: (name: string) => ClusterEndpoint | undefined
  /** Checks an agent's join token; `why` is for the server's log only. */
  authenticateAgent: (cluster: string, token: string) => AgentAuthResult
  /** False once the cluster is gone or the credential's token was rotated away (after any grace). */
  agentCredentialValid: (cluster: string, credential: string) => boolean
  /** The identity of a caller token of the cluster, or undefined. */
  verifyCallerToken: (cluster: string, token: string) => CallerIdentity | undefined
  /** The caller tokens of a cluster, without hashes; TOWER_ERR_UNKNOWN_CLUSTER like get() (the contract also accepts [] for an unknown name). */
  callerTokens: (name: string) => CallerTokenInfo[]

  // --- writes (asynchronous; `change` follows) --------------------------------
  /** Registers a cluster. Returns the join token: the only time the file backend can show it. */
  add: (name: string, opts?: AddOptions) => Promise<{ cluster: ClusterRecord, token: string }>
  /** Removes a cluster and every credential issued for it. */
  remove: (name: string) => Promise<void>
  /** Replaces the agent join token; the old one keeps working for `graceMs`. */
  rotateAgentToken: (name: string, opts?: { graceMs?: number }) => Promise<string>
  /** The current join token, where the backend keeps it (kubernetes: its Secret); undefined for the file backend, which keeps only a hash. */
  agentToken: (name: string) => Promise<string | undefined>
  /** Issues a caller token; only its hash is kept. */
  issueCallerToken: (name: string, identity: CallerIdentity) => Promise<{ token: string, id: string }>
  /** Revokes a caller token by id, or all with `*`; TOWER_ERR_UNKNOWN_TOKEN for an unknown id. */
  revokeCallerTokens: (name: string, id: string) => Promise<number>
  /** Denylists a client certificate serial (hex); false when it already was. */
  revokeCertificate: (name: string, serial: string) => Promise<boolean>

  // --- the running server -----------------------------------------------------
  /**
   * Becomes the registry of a running server: the file backend takes
   * server.lock (TOWER_ERR_SERVER_RUNNING when another live server holds
   * it) and watches state.json; the kubernetes backend checks the CRD and
   * its RBAC, syncs its informers and starts its reconciler.
   */
  claimServer: () => Promise<void>
  /** Gives the claim up (stops watching, releases locks or leases). */
  releaseServer: () => Promise<void>
  /** Persists ports the OS chose in an ephemeral range; never throws (failures are logged), and ignores unknown or hostile names. */
  recordPorts: (ports: Map<string, number>) => void
  /** The server's view of its clusters: status.json, or the Cluster conditions. Never throws. */
  reportStatus: (report: ServerStatusReport) => void
  /** The last report of a live server, or undefined when none runs. */
  readStatus: () => Promise<ServerStatusReport | undefined>
  /** Stops timers and watches; the registry is not used afterwards. */
  close: () => Promise<void>
  /**
   * Whether the backend's view is synced with where clusters are kept (the
   * kubernetes backend: its informers); the server is not ready while false.
   * Absent: synced once claimServer resolved.
   */
  synced?: () => boolean

  on: (event: 'change', listener: () => void) => this
  off: (event: 'change', listener: () => void) => this
}
