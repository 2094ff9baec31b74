export { TowerServer } from './server.ts'
export type {
  ClusterRegistry, RegistryKind, ClusterEndpoint, ServerStatusReport, ClusterRuntimeStatus, AgentStatus, CallerIdentity, CallerTokenInfo
} from './registry/api.ts'
export { FileRegistry, type FileRegistryOptions } from './registry/file-registry.ts'
export {
  findCluster, authenticateAgentIn, credentialValidIn, verifyCallerTokenIn, callerTokensOf, credentialId, matchAgentToken, credentialValid,
  nextGraceEnd, type AgentAuthResult, type AgentRefusal
} from './registry/records.ts'
export { checkAddOptions, checkGraceMs, checkSerial, MAX_ROTATION_GRACE_MS, type AddOptions } from './registry/input.ts'
export { MAX_CALLER_TOKENS, MAX_REVOKED_SERIALS } from './state-validate.ts'
export { newToken, hashToken, tokenMatches, TokenPrefix } from './registry/tokens.ts'
export { parsePortRange, formatPortRange, allocatePort, type PortRange } from './registry/ports.ts'
export {
  issueServingCertificate, needsRenewal, servingHosts, DEFAULT_SERVER_CERT_VALIDITY_DAYS, DEFAULT_CERT_RENEW_BEFORE_DAYS, type ServerCertPolicy
} from './registry/certificates.ts'
export { type ClusterRecord, type ClusterMode, type ServerSettings, type CallerTokenRecord, type PreviousAgentToken } from './state-store.ts'
export { defaultServerConfig, verifyServerConfig, type ServerOptions, type AgentEndpointLimits, type CallerLimits } from './config.ts'
export { issueKubeconfig, issueKubeconfigCredential, DEFAULT_CALLER_USER, type KubeconfigRequest, type IssuedKubeconfig } from './kubeconfig.ts'
export {
  ServerMetrics, createMetricsRegistry, serverMetricNames, exposedNames, codeLabel, CALLER_REFUSAL_REASONS, HANDSHAKE_RESULTS,
  type MetricsSource, type CallerRefusalReason, type EndpointSliceOperation, type EndpointSliceResult
} from './metrics.ts'
export { AuditLog, AuditEntry, AUDIT_LEVELS, REDACTED, redactURI, type AuditLevel, type AuditEvent, type AuditLogOptions, type AuditProtocol } from './audit.ts'
export {
  FileAuditSink, StreamAuditSink, DEFAULT_AUDIT_MAX_SIZE, DEFAULT_AUDIT_MAX_BACKUPS, DEFAULT_AUDIT_QUEUE_BYTES,
  type AuditSink, type FileAuditSinkOptions, type StreamAuditSinkOptions, type LineStream
} from './audit-sink.ts'
export { requestInfo, metricsVerb, REQUEST_VERBS, METRICS_VERBS, type RequestInfo, type RequestVerb, type ObjectRef, type MetricsVerb } from './request-verb.ts'
export * from './errors.ts'
