/**
 * Join and caller tokens: 256 random bits, shown once, stored only as a
 * SHA-256 hash, compared in constant time. A slow password hash is not needed:
 * the secret has full entropy, so the hash only has to be one-way.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

/** Prefixes make a leaked token recognisable to secret scanners. */
export const TokenPrefix = {
  agent: 'tower-agent_',
  caller: 'tower-caller_'
} as const

/** A new token: prefix + 32 random bytes in base64url. */
export function newToken (prefix: string): string {
  return prefix + randomBytes(32).toString('base64url')
}

/** The stored form of a token: `sha256:<hex>`. */
export function hashToken (token: string): string {
  return 'sha256:' + createHash('sha256').update(token, 'utf8').digest('hex')
}

/** True when `token` hashes to `storedHash`, compared in constant time. */
export function tokenMatches (token: string, storedHash: string): boolean {
  const a = Buffer.from(hashToken(token))
  const b = Buffer.from(storedHash)
  return a.length === b.length && timingSafeEqual(a, b)
}

/** The token from an `Authorization: Bearer …` header, or undefined. */
export function bearerToken (header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header)
  return m?.[1]
}
