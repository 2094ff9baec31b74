/**
 * The one validator of state.json, used on every read and on every write:
 * the store refuses to write a state it could not read back. The file is
 * treated as hostile: every field's type is checked, names must match the one
 * cluster-name rule, and the result is a fresh object whose maps have no
 * prototype, so no key of the file can reach Object.prototype.
 */
import { isClusterName, isClusterUid, normalizeSerial } from '@tower/pki'
import { StateError } from './errors.ts'
import { parsePortRange } from './registry/ports.ts'
import type { CallerTokenRecord, ClusterRecord, PreviousAgentToken, ServerSettings, StateFile } from './state-store.ts'

const HASH_RE = /^sha256:[0-9a-f]{64}$/
const TOKEN_ID_RE = /^[0-9a-f]{1,64}$/

/** Largest number of revoked certificate serials kept per cluster. */
export const MAX_REVOKED_SERIALS = 10_000

/** Largest number of caller tokens kept per cluster. */
export const MAX_CALLER_TOKENS = 10_000

type Bad = (what: string) => never

/** Checks `data` (parsed JSON) and returns a clean copy; throws StateError naming `where` and the field. */
export function validateState (data: unknown, where: string): StateFile {
  const bad: Bad = (what) => { throw new StateError(`${where} is corrupt: ${what}`) }
  if (!isObject(data)) bad('not an object')
  if (data.version !== 1) bad(`unsupported version ${JSON.stringify(data.version)}`)
  const server = validateServer(data.server, bad)
  if (!isObject(data.clusters)) bad('"clusters" is not an object')
  const clusters: Record<string, ClusterRecord> = Object.create(null)
  const ports = new Map<number, string>()
  for (const [name, c] of Object.entries(data.clusters)) {
    if (!isClusterName(name)) bad(`cluster name ${JSON.stringify(name)} is not a DNS label`)
    const rec = validateCluster(name, c, bad)
    if (rec.port !== 0) {
      const other = ports.get(rec.port)
      if (other !== undefined) bad(`clusters.${name}.port ${rec.port} is also the port of cluster "${other}"`)
      ports.set(rec.port, name)
    }
    clusters[name] = rec
  }
  return { version: 1, server, clusters }
}

function validateServer (s: unknown, bad: Bad): ServerSettings {
  if (!isObject(s)) bad('"server" is not an object')
  if (typeof s.advertiseHost !== 'string' || s.advertiseHost === '') bad('server.advertiseHost is not a non-empty string')
  if (!Array.isArray(s.sans) || !s.sans.every((x) => typeof x === 'string' && x !== '')) bad('server.sans is not a list of names')
  if (typeof s.portRange !== 'string') bad('server.portRange is not a string')
  try {
    parsePortRange(s.portRange)
  } catch (err) {
    bad(`server.portRange: ${(err as Error).message}`)
  }
  const out: ServerSettings = { advertiseHost: s.advertiseHost, sans: [...s.sans], portRange: s.portRange }
  if (s.listenPort !== undefined) {
    if (!isPort(s.listenPort, 0)) bad('server.listenPort is not an integer in 0-65535')
    out.listenPort = s.listenPort
  }
  return out
}

function validateCluster (name: string, c: unknown, bad: Bad): ClusterRecord {
  const f = `clusters.${name}`
  if (!isObject(c)) bad(`${f} is not an object`)
  if (c.name !== name) bad(`${f}.name does not match its key`)
  if (c.mode !== 'proxy' && c.mode !== 'passthrough') bad(`${f}.mode is ${JSON.stringify(c.mode)}`)
  if (!isPort(c.port, 0)) bad(`${f}.port is not an integer in 0-65535`)
  if (typeof c.impersonate !== 'boolean') bad(`${f}.impersonate is not a boolean`)
  if (typeof c.agentTokenHash !== 'string' || !HASH_RE.test(c.agentTokenHash)) bad(`${f}.agentTokenHash is invalid`)
  if (!isTime(c.tokenRotatedAt)) bad(`${f}.tokenRotatedAt is not a time`)
  if (!isTime(c.createdAt)) bad(`${f}.createdAt is not a time`)
  const rec: ClusterRecord = {
    name,
    mode: c.mode,
    port: c.port,
    impersonate: c.impersonate,
    agentTokenHash: c.agentTokenHash,
    tokenRotatedAt: c.tokenRotatedAt,
    callerTokens: validateCallerTokens(f, c.callerTokens, bad),
    revokedSerials: validateSerials(f, c.revokedSerials, bad),
    createdAt: c.createdAt
  }
  // Clusters added before uids existed have none; their certificates carry none either.
  if (c.uid !== undefined) {
    if (!isClusterUid(c.uid)) bad(`${f}.uid is invalid`)
    rec.uid = c.uid
  }
  if (c.previousAgentToken !== undefined) rec.previousAgentToken = validatePrevious(f, c.previousAgentToken, bad)
  return rec
}

function validateCallerTokens (f: string, list: unknown, bad: Bad): CallerTokenRecord[] {
  if (!Array.isArray(list)) bad(`${f}.callerTokens is not a list`)
  if (list.length > MAX_CALLER_TOKENS) bad(`${f}.callerTokens has more than ${MAX_CALLER_TOKENS} entries`)
  return list.map((t: unknown, i): CallerTokenRecord => {
    const g = `${f}.callerTokens[${i}]`
    if (!isObject(t)) bad(`${g} is not an object`)
    if (typeof t.id !== 'string' || !TOKEN_ID_RE.test(t.id)) bad(`${g}.id is invalid`)
    if (typeof t.hash !== 'string' || !HASH_RE.test(t.hash)) bad(`${g}.hash is invalid`)
    if (typeof t.user !== 'string' || t.user === '') bad(`${g}.user is not a non-empty string`)
    if (!Array.isArray(t.groups) || !t.groups.every((x) => typeof x === 'string' && x !== '')) bad(`${g}.groups is not a list of names`)
    if (!isTime(t.createdAt)) bad(`${g}.createdAt is not a time`)
    return { id: t.id, hash: t.hash, user: t.user, groups: [...t.groups], createdAt: t.createdAt }
  })
}

function validateSerials (f: string, list: unknown, bad: Bad): string[] {
  if (list === undefined) return []
  if (!Array.isArray(list)) bad(`${f}.revokedSerials is not a list`)
  if (list.length > MAX_REVOKED_SERIALS) bad(`${f}.revokedSerials has more than ${MAX_REVOKED_SERIALS} entries`)
  return list.map((s: unknown, i) => {
    if (typeof s !== 'string' || normalizeSerial(s) !== s) bad(`${f}.revokedSerials[${i}] is not a lowercase hex serial`)
    return s
  })
}

function validatePrevious (f: string, p: unknown, bad: Bad): PreviousAgentToken {
  if (!isObject(p)) bad(`${f}.previousAgentToken is not an object`)
  if (typeof p.hash !== 'string' || !HASH_RE.test(p.hash)) bad(`${f}.previousAgentToken.hash is invalid`)
  if (!isTime(p.until)) bad(`${f}.previousAgentToken.until is not a time`)
  return { hash: p.hash, until: p.until }
}

function isObject (v: unknown): v is Record<string, any> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function isPort (v: unknown, min: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= 65535
}

function isTime (v: unknown): v is string {
  return typeof v === 'string' && v.length <= 64 && !Number.isNaN(Date.parse(v))
}
