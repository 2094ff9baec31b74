/**
 * Constants of the agent ↔ server handshake and of the WebSocket framing.
 * Both ends import them from here, so a change is one edit and one review.
 */

/** The WebSocket path of the server's agent endpoint. */
export const AGENT_PATH = '/tower/v1/connect'

/**
 * The only `Sec-WebSocket-Protocol` the server accepts. Anything else is
 * answered with 400 before the upgrade; bump the version on any wire change.
 */
export const SUBPROTOCOL = 'tower.yamux.v1'

/** Request header carrying the cluster name the agent claims. */
export const HEADER_CLUSTER = 'tower-cluster'

/** Request header carrying the agent instance id (a uuid), for logs and for spreading streams. */
export const HEADER_AGENT_ID = 'tower-agent-id'

/**
 * Response header of the 101: the server's limit of open streams per agent
 * (a decimal integer), so the agent can size what it offers to match.
 */
export const HEADER_MAX_STREAMS = 'tower-max-streams'

/** Longest agent id the server accepts in {@link HEADER_AGENT_ID}, in characters. */
export const MAX_AGENT_ID_LENGTH = 64

/**
 * Agent ids: printable token characters only, so they can go into logs
 * unescaped. The one agent-id rule; the cluster-name rule is `isClusterName`
 * in @tower/pki.
 */
export const AGENT_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/

/** Version byte of the stream preamble (see `packages/mux/spec.md`, "Tower handshake"). */
export const PREAMBLE_VERSION = 1

/** Size of the fixed preamble header: u8 version, u8 kind, u16 length (big-endian), in bytes. */
export const PREAMBLE_HEADER_SIZE = 4

/** Largest JSON body a preamble may carry, in bytes; longer is a protocol error. */
export const MAX_PREAMBLE_BODY = 4096

/**
 * Wire codes of the stream kinds in the preamble's kind byte: `http` is
 * HTTP/1.1 text, `tcp` raw bytes, `hframe` hop frames (`hop-frame.ts`).
 */
export const STREAM_KIND_CODES = { http: 1, tcp: 2, hframe: 3 } as const

/**
 * Request header of the agent's WebSocket upgrade: comma-separated feature
 * tokens the agent supports. Servers that predate it ignore it.
 */
export const HEADER_FEATURES = 'tower-features'

/** Feature token: the agent serves streams of kind `hframe` (hop frames). */
export const FEATURE_HOP_FRAME = 'hframe'

/** Largest payload of one hop DATA frame, in bytes. */
export const HOP_MAX_DATA = 65536

/** Default largest payload of a hop REQUEST_HEAD or RESPONSE_HEAD frame, in bytes. */
export const HOP_MAX_HEAD_BYTES = 65536

/** Default largest number of header name/value pairs in one hop head. */
export const HOP_MAX_PAIRS = 512

/** How long the agent waits for the preamble on a new stream, in milliseconds. */
export const DEFAULT_PREAMBLE_TIMEOUT = 10_000

/** WebSocket close code for a normal close (RFC 6455 §7.4.1). */
export const WS_CLOSE_NORMAL = 1000

/** WebSocket close code for "going away": the process is shutting down. */
export const WS_CLOSE_GOING_AWAY = 1001
