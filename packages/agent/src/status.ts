/**
 * Error answers in the shape kubectl understands: a Kubernetes `Status`
 * object, so `kubectl` prints the message instead of "unknown error".
 */

/** A `Status` JSON body for an error the agent answers itself. */
export function statusBody (code: number, reason: string, message: string): string {
  return JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code })
}

/** The 502 answered when the upstream cannot be reached. */
export function upstreamUnreachable (err: Error): { code: number, body: string } {
  return { code: 502, body: statusBody(502, 'ServiceUnavailable', `tower agent: upstream unreachable: ${err.message}`) }
}
