/**
 * What the agent answers when it cannot serve a request itself. The answer
 * is written by the one Status writer in @tower/transport, so kubectl prints
 * the message instead of "unknown error".
 */
import type { LogLimiter } from '@tower/mux'
import type { TunnelResponse } from './exchange.ts'

/** The 502 answered when the upstream cannot be reached. */
export function upstreamUnreachable (err: Error): { code: number, message: string } {
  return { code: 502, message: `tower agent: upstream unreachable: ${err.message}` }
}

/**
 * Why a request target cannot be re-originated, or undefined when it can.
 * Only origin-form (`/path?query`) is: the server never sends anything else,
 * and an absolute-form target (`http://169.254.169.254/…`), an authority
 * (`CONNECT host:port`), `*`, or a scheme-relative `//host/…` must never
 * make the agent talk to anything but its configured upstream, nor reach
 * the upstream in a form it might read as naming another host.
 */
export function badRequestTarget (url: string | undefined): string | undefined {
  if (url === undefined || url.length === 0 || url[0] !== '/' || url[1] === '/') {
    return 'tower agent: the request target must be a path (origin-form)'
  }
  return undefined
}

/**
 * Answers a plain request whose upstream failed before a response began with
 * the 502 Status of {@link upstreamUnreachable}, on either hop (an HTTP/1.1
 * response with `connection: close`, or a RESPONSE_HEAD with a Status body).
 * An upstream that is down fails every request, so the warning is
 * rate-limited per error code.
 */
export function answerUnreachable (res: TunnelResponse, err: Error, warnings: LogLimiter): void {
  const code = (err as { code?: string }).code
  warnings.warn(`upstream:${code ?? 'unknown'}`, { reason: err.message, code }, 'upstream unreachable; answering 502')
  const answer = upstreamUnreachable(err)
  res.sendStatus(answer.code, answer.message)
}
