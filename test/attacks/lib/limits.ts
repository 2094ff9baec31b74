/**
 * Short timeouts for the attack suite's server, by concept. The server's
 * flags for them are found by name in `tower server --help` (every flag that
 * names the concept gets the value: agent endpoint, proxy and passthrough
 * ports may each have their own), so the suite does not break when a flag
 * is renamed, and a concept with no flag at all is reported by the test
 * that needs it.
 */
import { durationValue, serverFlags } from './tower-process.ts'

/** A timeout concept and the value the suite wants for it, in milliseconds. */
export interface TimeoutWish {
  /** Concept, for messages: 'handshake timeout'. */
  name: string
  /** Matches every flag name of the concept. */
  pattern: RegExp
  ms: number
}

/** TLS handshake (and pre-TLS) timeout of every listener. */
export const HANDSHAKE: TimeoutWish = { name: 'TLS handshake timeout', pattern: /handshake-timeout/, ms: 1000 }
/** Request-head timeout of every listener. */
export const HEADERS: TimeoutWish = { name: 'request-head timeout', pattern: /head(er)?s?-timeout/, ms: 1500 }
/** Idle timeout of every listener (passthrough ports included). */
export const IDLE: TimeoutWish = { name: 'idle timeout', pattern: /idle-timeout/, ms: 2000 }

/** Flags setting each wished timeout, and the concepts no flag matched. */
export async function timeoutFlags (wishes: TimeoutWish[]): Promise<{ flags: Record<string, string>, missing: Set<string> }> {
  const known = [...await serverFlags()]
  const flags: Record<string, string> = {}
  const missing = new Set<string>()
  for (const w of wishes) {
    const names = known.filter((f) => w.pattern.test(f))
    if (names.length === 0) missing.add(w.name)
    for (const f of names) flags[f] = durationValue(f, w.ms)
  }
  return { flags, missing }
}
