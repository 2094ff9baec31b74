/**
 * What a caller is told when its request could not reach an agent. The
 * answer itself is written by the one Status writer in @tower/transport.
 *
 * A cluster without an agent is "reconnecting" for a short grace after its
 * last agent left: 503 with `Retry-After`, so client-go retries quietly
 * across an agent restart. After the grace it is "offline": 502 without
 * `Retry-After` and with a plain-text body, so kubectl fails at once and
 * prints Tower's message, which says since when no agent has been
 * connected, instead of retrying for half a minute and then printing a
 * generic error.
 *
 * Why 502 and text, measured with kubectl v1.32: for a 503 (and 504)
 * client-go prints a fixed sentence on its discovery path, which every
 * `kubectl get` takes first ("the server is currently unable to handle the
 * request"), whatever the body; for other 5xx it quotes the body, but only a
 * text one ("an error on the server (\"tower: …\") has prevented the
 * request from succeeding"). 502 also says what happened: the gateway has
 * nothing to forward to.
 */

/** How a delivery failure is answered. */
export interface DeliveryFailure {
  /** HTTP status: 503 when waiting may help, 502 otherwise (an offline cluster included). */
  code: number
  /** Extra response headers (`retry-after` in seconds when retrying makes sense). */
  headers: Record<string, string>
  /** The message for the caller, prefixed `tower:`. */
  message: string
  /** Answer in plain text rather than a Status object, so kubectl shows the message. */
  text: boolean
}

/** Default of `offlineGraceMs`: a gap shorter than this is an agent reconnecting, in milliseconds. */
export const DEFAULT_OFFLINE_GRACE_MS = 10_000

/**
 * The answer for an error that kept a request from reaching an agent.
 * `graceMs` is the reconnect grace (milliseconds) and `now` the current time
 * (ms since epoch). `replicated`: one of several server replicas (controller
 * mode), where a missing session means only that the caller reached a
 * replica that holds none — the cluster's Service routes to those that do,
 * so the answer is an immediate 503 to retry, never the "offline" 502.
 */
export function deliveryFailure (err: Error, graceMs: number = DEFAULT_OFFLINE_GRACE_MS, now: number = Date.now(), replicated = false): DeliveryFailure {
  const e = err as Error & { code?: string, offlineSince?: unknown }
  switch (e.code) {
    case 'TOWER_ERR_NO_AGENT': {
      if (replicated) {
        return { code: 503, headers: { 'retry-after': '1' }, text: false, message: `tower: ${e.message} on this server replica; the cluster's Service sends callers to the replicas that hold a session, and had not caught up yet (retry)` }
      }
      const since = typeof e.offlineSince === 'number' && Number.isFinite(e.offlineSince) ? e.offlineSince : undefined
      if (since !== undefined && now - since >= graceMs) {
        return { code: 502, headers: {}, text: true, message: `tower: ${e.message} since ${new Date(since).toISOString()} (${ago(now - since)} ago); is its tower agent running?` }
      }
      return { code: 503, headers: { 'retry-after': '1' }, text: false, message: `tower: ${e.message} (an agent may be reconnecting; retry)` }
    }
    case 'TOWER_ERR_STREAM_LIMIT':
    case 'TOWER_ERR_SESSION_CLOSED':
      return { code: 503, headers: { 'retry-after': '1' }, text: false, message: `tower: ${e.message}` }
    default:
      return { code: 502, headers: {}, text: false, message: `tower: ${e.message}` }
  }
}

// "42s", "7m", "3h", "2d": coarse is enough to tell a blip from an outage.
function ago (ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 120) return `${s}s`
  if (s < 7200) return `${Math.floor(s / 60)}m`
  if (s < 172_800) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86_400)}d`
}
