/**
 * WebSocket-level liveness: ping on an interval, terminate the socket when the
 * peer has not been heard from (pong or any message) for `timeoutMs`.
 *
 * The mux has its own keepalive (Ping frames, `sessionOptions`), which also
 * proves the peer's mux is alive. This one works below the mux: ws answers
 * pings by itself, so it can run before a session exists or on a connection
 * that carries no mux at all.
 */
import type { WebSocket } from 'ws'
import { InvalidArgumentError, HeartbeatTimeoutError } from './errors.ts'

/** Options of {@link startHeartbeat}. */
export interface HeartbeatOptions {
  /** How often to ping, in milliseconds. */
  intervalMs: number
  /** Silence after which the socket is terminated, in milliseconds; must exceed `intervalMs`. */
  timeoutMs: number
  /** Called once when the timeout fires, before the socket is terminated. */
  onTimeout?: (err: HeartbeatTimeoutError) => void
}

/** A running heartbeat. */
export interface Heartbeat {
  /** Stops pinging; idempotent. Called automatically when the socket closes. */
  stop (): void
}

const OPEN = 1

/** Starts a heartbeat on an open WebSocket. */
export function startHeartbeat (ws: WebSocket, options: HeartbeatOptions): Heartbeat {
  const { intervalMs, timeoutMs } = options
  if (!Number.isFinite(intervalMs) || intervalMs <= 0) throw new InvalidArgumentError('heartbeat intervalMs must be a positive number of milliseconds')
  if (!Number.isFinite(timeoutMs) || timeoutMs <= intervalMs) throw new InvalidArgumentError('heartbeat timeoutMs must exceed intervalMs')

  let heard = false
  let lastHeard = Date.now()
  const onHeard = (): void => { heard = true }

  const tick = (): void => {
    const now = Date.now()
    if (heard) {
      heard = false
      lastHeard = now
    }
    if (now - lastHeard >= timeoutMs) {
      stop()
      options.onTimeout?.(new HeartbeatTimeoutError(timeoutMs))
      ws.terminate()
      return
    }
    // ping() throws when the socket is not open; the close event stops us.
    if (ws.readyState === OPEN) ws.ping()
  }

  const timer = setInterval(tick, intervalMs)
  timer.unref()

  const stop = (): void => {
    clearInterval(timer)
    ws.off('pong', onHeard)
    ws.off('message', onHeard)
    ws.off('close', stop)
  }

  ws.on('pong', onHeard)
  ws.on('message', onHeard)
  ws.on('close', stop)
  return { stop }
}
