/**
 * Header lists of the hop frame (hop-client.ts), built from what the proxy
 * sends on the HTTP/1.1 hop (headers.ts): the frame wants names lower case
 * and never carries `expect` (the server answers 100-continue itself) or a
 * hop-by-hop header. Responses are filtered again here, whatever the agent
 * sent: an agent is trusted with its cluster, not with the caller's connection.
 */
import { dropSet, filterRawHeaders, withConnectionOptions } from '@tower/transport'

const REQUEST_DROP = dropSet(['expect'])
const RESPONSE_DROP = dropSet()

/** `raw` (from forwardRequestHeaders plus identity and Audit-ID) as the frame's list. */
export function hopRequestHeaders (raw: readonly string[]): string[] {
  const out: string[] = []
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    if (!REQUEST_DROP.has(name)) out.push(name, raw[i + 1]!)
  }
  return out
}

/** Whether an HTTP/1.1 caller's request has a body: what node's parser decided from the same headers. */
export function hasRequestBody (headers: { 'content-length'?: string | undefined, 'transfer-encoding'?: string | undefined }): boolean {
  if (headers['transfer-encoding'] !== undefined) return true
  const length = headers['content-length']
  return length !== undefined && length !== '0'
}

/** An agent's response list for an HTTP/1.1 caller: hop-by-hop headers and those its Connection names removed. */
export function hopResponseHeaders (raw: readonly string[]): string[] {
  let connection: string[] | undefined
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') (connection ??= []).push(raw[i + 1]!)
  }
  return filterRawHeaders(raw, withConnectionOptions(RESPONSE_DROP, connection))
}

/** Whether a raw list carries `content-length`. */
export function hasContentLength (raw: readonly string[]): boolean {
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === 'content-length') return true
  return false
}
