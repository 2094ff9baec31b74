/**
 * @tower/transport: the WebSocket carrier of the mux, the agent ↔ server
 * handshake constants, the stream preamble, and the shared error base.
 */
export {
  AGENT_PATH,
  SUBPROTOCOL,
  HEADER_CLUSTER,
  HEADER_AGENT_ID,
  HEADER_MAX_STREAMS,
  MAX_AGENT_ID_LENGTH,
  AGENT_ID_PATTERN,
  MAX_PREAMBLE_BODY,
  DEFAULT_PREAMBLE_TIMEOUT,
  WS_CLOSE_NORMAL,
  WS_CLOSE_GOING_AWAY,
  STREAM_KIND_CODES,
  HEADER_FEATURES,
  FEATURE_HOP_FRAME,
  HOP_MAX_DATA,
  HOP_MAX_HEAD_BYTES,
  HOP_MAX_PAIRS
} from './constants.ts'
export {
  encodeRequestHead,
  encodeResponseHead,
  encodeDataHeader,
  encodeEnd,
  HopDecoder,
  type HopRequestHead,
  type HopResponseHead,
  type HopMessage,
  type HopLimits
} from './hop-frame.ts'
export { wsStream, type WsStreamOptions } from './ws-stream.ts'
export { FrameParser, type FrameSink, frameHeader, applyMask, zeroMask, isSendableCloseCode, Opcode, MAX_CONTROL_PAYLOAD } from './ws-frame.ts'
export { acceptKey, acceptUpgrade, upgradeProblem, requestUpgrade, type UpgradeRequest, type UpgradeResult, type PendingUpgrade } from './ws-handshake.ts'
export { sessionOptions, SESSION_DEFAULTS } from './config.ts'
export { encodePreamble, readPreamble, type Preamble, type StreamKind } from './preamble.ts'
export { splice } from './splice.ts'
export { sendStatus, sendStatusRaw, sendStatusH2, statusBody, statusReason, ERROR_LINGER_MS, type StatusAnswerOptions } from './http-status.ts'
export { HOP_BY_HOP_HEADERS, dropSet, withConnectionOptions, filterRawHeaders } from './hop-by-hop.ts'
export { relayUpgrade, type UpgradeRelayOptions } from './upgrade-relay.ts'
export { HealthServer, type HealthServerOptions, type Readiness } from './health-server.ts'
export { createMetricsRegistry, exposedNames } from './metrics-registry.ts'
export {
  TowerError,
  InvalidArgumentError,
  ProtocolError,
  StreamResetError,
  SessionClosedError,
  KeepAliveTimeoutError,
  StreamLimitError,
  GoAwayCode,
  HandshakeError,
  PreambleError,
  WsFrameError,
  WsClosedError,
  WsBacklogError,
  HopFrameError
} from './errors.ts'
