/**
 * @tower/agent: runs inside a member cluster, dials out to the Tower server
 * and re-originates tunnelled requests to the kube-apiserver with the
 * cluster's own credentials.
 */
export { Agent, type AgentEvents } from './agent.ts'
export {
  AGENT_DEFAULTS,
  IN_CLUSTER_CA_FILE,
  IN_CLUSTER_TOKEN_FILE,
  resolveAgentOptions,
  type AgentOptions,
  type ResolvedAgentOptions,
  type UpstreamConfig,
  type InClusterUpstream,
  type KubeconfigUpstream,
  type UrlUpstream,
  type JitterKind,
  type Http2Mode
} from './config.ts'
export type { H2PoolStats } from './h2-pool.ts'
export { AgentMetrics, createMetricsRegistry, agentMetricNames, dialFailureReason, DIAL_FAILURE_REASONS, type DialFailureReason, type AgentMetricsSource } from './metrics.ts'
export { NoProxy } from './no-proxy.ts'
export {
  TowerError,
  InvalidArgumentError,
  HandshakeError,
  KubeconfigError,
  CredentialsError,
  UpstreamError
} from './errors.ts'
