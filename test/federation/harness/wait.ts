/**
 * Small helpers the federation tests share: JSON reads through kubectl, polling with a deadline (the
 * controllers are eventually consistent and offer no event to wait on), and a condition lookup that
 * treats the controllers' status as untrusted shape.
 */
import { waitFor, type ApiServer } from '../../e2e/harness/index.ts'

/** `kubectl get ... -o json` parsed; undefined when kubectl fails (e.g. NotFound). */
export async function getJson (server: ApiServer, args: string[]): Promise<any> {
  const r = await server.kubectlResult(['get', ...args, '-o', 'json'], { timeoutMs: 20_000 })
  if (r.code !== 0) return undefined
  return JSON.parse(r.stdout)
}

/** Poll `check` every 500 ms until it returns a value, at most `timeoutMs`. */
export async function eventually<T> (what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  return await waitFor(what, check, { timeoutMs, intervalMs: 500 })
}

/** The `type` condition of an object's status.conditions, or undefined. */
export function condition (obj: any, type: string): { status?: string, reason?: string, message?: string } | undefined {
  const list: unknown = obj?.status?.conditions
  if (!Array.isArray(list)) return undefined
  return list.find((c: any) => c?.type === type)
}

/** How many objects `kubectl get <kind> -n ns -l selector` lists. */
export async function countObjects (server: ApiServer, kind: string, namespace: string, selector: string): Promise<number> {
  const r = await server.kubectlResult(['get', kind, '-n', namespace, '-l', selector, '-o', 'name'], { timeoutMs: 30_000 })
  if (r.code !== 0) return -1
  return r.stdout.split('\n').filter((l) => l.trim() !== '').length
}
