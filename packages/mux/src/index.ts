export { Session } from './session.ts'
export type { SessionEvents } from './session.ts'
export { MuxStream } from './stream.ts'
export type { SessionOptions, SessionConfig } from './config.ts'
export { defaultConfig, verifyConfig } from './config.ts'
export { FrameType, Flag, HEADER_SIZE, PROTOCOL_VERSION, SPEC_INITIAL_WINDOW } from './constants.ts'
export { encodeHeader, readHeader, writeHeader, describeFrame } from './frame.ts'
export type { FrameHeader } from './frame.ts'
export { FrameDecoder } from './decoder.ts'
export type { FrameHandler } from './decoder.ts'
export {
  TowerError,
  InvalidArgumentError,
  GoAwayCode,
  ProtocolError,
  StreamResetError,
  SessionClosedError,
  KeepAliveTimeoutError,
  StreamLimitError,
  StreamOpenTimeoutError
} from './errors.ts'
export { LogLimiter } from './log-limiter.ts'
export type { LogLimiterOptions } from './log-limiter.ts'
export type { Logger } from './logger.ts'
export { silentLogger } from './logger.ts'
