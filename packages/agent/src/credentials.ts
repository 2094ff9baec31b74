/**
 * Credentials the agent adds to requests it re-originates. The member
 * cluster's credentials stay here: the tunnel side's Authorization is always
 * dropped and replaced by one of these.
 *
 * Projected ServiceAccount tokens rotate (kubelet rewrites the file, by
 * swapping a symlink, well before expiry), so a token file is re-checked at
 * most every `refreshMs` and re-read when its inode, size or mtime changed.
 * A failed re-read keeps the last good token: during the swap the file may
 * briefly be missing.
 */
import { readFileSync, statSync } from 'node:fs'
import type { Logger } from '@tower/mux'
import { CredentialsError } from './errors.ts'

/** Produces the Authorization header value for the next upstream request. */
export interface CredentialSource {
  /** The header value (`Bearer …` or `Basic …`), or undefined when the upstream takes none (mTLS only). */
  authorization (): string | undefined
}

/** No Authorization header: client certificates or an open upstream. */
export const noCredentials: CredentialSource = { authorization: () => undefined }

/** A fixed bearer token. */
export function staticToken (token: string): CredentialSource {
  const value = `Bearer ${token}`
  return { authorization: () => value }
}

/** HTTP basic credentials from a kubeconfig (`username` / `password`). */
export function basicAuth (username: string, password: string): CredentialSource {
  const value = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`
  return { authorization: () => value }
}

/** A bearer token read from a file and re-read when the file changes. */
export class TokenFile implements CredentialSource {
  readonly #path: string
  readonly #refreshMs: number
  readonly #log: Logger
  #token: string
  #checkedAt = 0
  #signature = ''
  #lastError = ''

  /**
   * Reads the token once; throws {@link CredentialsError} when that fails, so
   * a wrong path shows at start rather than as 401s later.
   * @param refreshMs the file is re-checked at most this often, in milliseconds (0 = every request)
   */
  constructor (path: string, refreshMs: number, logger: Logger) {
    this.#path = path
    this.#refreshMs = refreshMs
    this.#log = logger
    try {
      this.#signature = this.#stat()
      this.#token = this.#read()
    } catch (err) {
      throw new CredentialsError(`cannot read token file ${path}: ${(err as Error).message}`, { cause: err })
    }
    this.#checkedAt = Date.now()
  }

  /** The current token, re-read if the file changed. */
  get token (): string {
    const now = Date.now()
    if (now - this.#checkedAt >= this.#refreshMs) {
      this.#checkedAt = now
      this.#refresh()
    }
    return this.#token
  }

  authorization (): string {
    return `Bearer ${this.token}`
  }

  #refresh (): void {
    try {
      const signature = this.#stat()
      if (signature === this.#signature) return
      const token = this.#read()
      this.#signature = signature
      this.#token = token
      this.#lastError = ''
      this.#log.info({ path: this.#path }, 'token file changed; using the new token')
    } catch (err) {
      const message = (err as Error).message
      // once per distinct problem, not once per request
      if (message !== this.#lastError) {
        this.#lastError = message
        this.#log.warn({ path: this.#path, reason: message }, 'cannot re-read token file; keeping the previous token')
      }
    }
  }

  #stat (): string {
    const s = statSync(this.#path, { bigint: true })
    return `${s.ino}:${s.size}:${s.mtimeNs}`
  }

  #read (): string {
    const token = readFileSync(this.#path, 'utf8').trim()
    if (token === '') throw new Error('token file is empty')
    return token
  }
}
