/**
 * Cluster ports, allocated through one ConfigMap (tower-ports) whose data
 * maps "<port>" to "<cluster>/<uid>". Every change is a read-modify-update
 * carrying the ConfigMap's resourceVersion, so when two replicas (or two
 * controllers without leader election) allocate at once, the apiserver takes
 * one update and answers the other 409 Conflict; the loser re-reads and
 * allocates again against the winner's entries. No port is ever handed out
 * twice, whatever the Cluster specs say.
 *
 * The decisions themselves are pure (planPort) and unit-tested; this class
 * only adds the loop around the apiserver.
 */
import type { V1ConfigMap } from '@kubernetes/client-node'
import { silentLogger, type Logger } from '@tower/mux'
import type { PortRange } from '@tower/server'
import { statusOf } from './errors.ts'
import type { KubeContext } from './kube-context.ts'
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, PORTS_CONFIGMAP, PortReason } from './names.ts'

/** Who owns a port. */
export interface PortOwner {
  cluster: string
  uid: string
}

/** One entry of the table: its owner, or the raw value of an entry nobody can parse (kept, and its port stays taken). */
export type PortEntry = PortOwner | { unreadable: string }

/** The port table, as read from the ConfigMap. */
export type PortTable = Map<number, PortEntry>

/** The result of asking for a cluster's port. */
export type PortOutcome =
  | { ok: true, port: number }
  | { ok: false, reason: typeof PortReason[keyof typeof PortReason], message: string }

/** What planPort decided: the outcome, and the new data when the ConfigMap must change. */
export interface PortPlan {
  outcome: PortOutcome
  /** The ConfigMap data to write, or undefined when it already says the right thing. */
  data?: Record<string, string>
}

/** Most conflicting updates tried before giving up (the work queue retries later). */
const MAX_ATTEMPTS = 25

/** Parses the ConfigMap data; a value that is not "<cluster>/<uid>" still holds its port. Keys that are not ports are dropped. */
export function readPortTable (data: unknown): PortTable {
  const out: PortTable = new Map()
  if (typeof data !== 'object' || data === null) return out
  for (const [k, v] of Object.entries(data as Record<string, unknown>)) {
    if (!/^\d{1,5}$/.test(k)) continue
    const port = Number(k)
    if (port < 1 || port > 65535) continue
    const m = typeof v === 'string' ? /^([a-z0-9][-a-z0-9.]{0,252})\/([-0-9a-zA-Z]{1,64})$/.exec(v) : null
    // An entry nobody can parse still blocks its port: handing it out could give one port to two clusters.
    out.set(port, m === null ? { unreadable: String(v).slice(0, 512) } : { cluster: m[1] as string, uid: m[2] as string })
  }
  return out
}

/**
 * Decides the port of `owner` against the table: its own entry, else the
 * port it `wants` (spec) when free, else the lowest free port of `range`.
 * Entries of the same cluster name with another uid are stale (the Cluster
 * was re-created) and freed. `reserved` ports (the agent endpoint) are never given.
 */
export function planPort (table: PortTable, owner: PortOwner, range: PortRange,
  wants: number | undefined, reserved: ReadonlySet<number> = new Set()): PortPlan {
  let changed = false
  let own: number | undefined
  const next = new Map(table)
  for (const [port, o] of table) {
    if (!('cluster' in o) || o.cluster !== owner.cluster) continue
    if (o.uid !== owner.uid || (own !== undefined)) {
      next.delete(port)
      changed = true
    } else {
      own = port
    }
  }
  const done = (outcome: PortOutcome): PortPlan => changed ? { outcome, data: renderPortTable(next) } : { outcome }

  if (wants !== undefined) {
    if (!Number.isInteger(wants) || wants < 1 || wants > 65535) {
      return done({ ok: false, reason: PortReason.PortOutOfRange, message: `port ${String(wants)} is outside 1-65535` })
    }
    if (own === wants) return done({ ok: true, port: own })
    const holder = next.get(wants)
    if (next.has(wants) || reserved.has(wants)) {
      const by = reserved.has(wants) ? 'Tower itself (the agent endpoint)' : holder !== undefined && 'cluster' in holder ? `cluster ${holder.cluster}` : `an unreadable entry of the ConfigMap ${PORTS_CONFIGMAP}`
      return done({ ok: false, reason: PortReason.PortConflict, message: `port ${wants} is already used by ${by}; choose another or remove the port from the spec to get one from the range` })
    }
    if (own !== undefined) next.delete(own)
    next.set(wants, owner)
    changed = true
    return done({ ok: true, port: wants })
  }
  if (own !== undefined) return done({ ok: true, port: own })
  const port = lowestFree(range, next, reserved)
  if (port === undefined) {
    return done({ ok: false, reason: PortReason.PortRangeExhausted, message: `every port of the range ${range.first}-${range.last} is allocated; widen --port-range or remove a cluster` })
  }
  next.set(port, owner)
  changed = true
  return done({ ok: true, port })
}

/** The ConfigMap data of a table, ports in order. */
export function renderPortTable (table: PortTable): Record<string, string> {
  const data: Record<string, string> = Object.create(null)
  for (const [port, o] of [...table].sort((a, b) => a[0] - b[0])) data[String(port)] = 'cluster' in o ? `${o.cluster}/${o.uid}` : o.unreadable
  return data
}

function lowestFree (range: PortRange, table: PortTable, reserved: ReadonlySet<number>): number | undefined {
  for (let p = range.first; p <= range.last; p++) {
    if (!table.has(p) && !reserved.has(p)) return p
  }
  return undefined
}

/** Options of {@link PortAllocator}. */
export interface PortAllocatorOptions {
  context: KubeContext
  /** --port-range; must not be the ephemeral range 0. */
  range: PortRange
  /** Ports never handed out (the agent endpoint's). */
  reserved?: ReadonlySet<number>
  logger?: Logger
}

/** See the module comment. */
export class PortAllocator {
  readonly #ctx: KubeContext
  readonly #range: PortRange
  readonly #reserved: ReadonlySet<number>
  readonly #log: Logger

  constructor (opts: PortAllocatorOptions) {
    this.#ctx = opts.context
    this.#range = opts.range
    this.#reserved = opts.reserved ?? new Set()
    this.#log = (opts.logger ?? silentLogger).child({ component: 'port-allocator' })
  }

  /**
   * The port of `owner`: kept, taken from `wants` or allocated; a refusal
   * says why. `cached` (the informer's copy of the ConfigMap) answers
   * without a request when it already holds the owner's entry; every change,
   * and every refusal, is decided on a fresh read.
   */
  async ensure (owner: PortOwner, wants: number | undefined, cached?: V1ConfigMap): Promise<PortOutcome> {
    if (cached !== undefined) {
      const p = planPort(readPortTable(cached.data), owner, this.#range, wants, this.#reserved)
      if (p.outcome.ok && p.data === undefined) return p.outcome
    }
    return await this.#update((table) => planPort(table, owner, this.#range, wants, this.#reserved))
  }

  /** Frees every port of cluster `name` (every uid). */
  async release (name: string): Promise<void> {
    await this.#update((table) => {
      const next = new Map([...table].filter(([, o]) => !('cluster' in o) || o.cluster !== name))
      return { outcome: { ok: true, port: 0 }, data: next.size !== table.size ? renderPortTable(next) : undefined }
    })
  }

  /** The current table, read from the apiserver (for tests and the resync's garbage collection). */
  async table (): Promise<PortTable> {
    return readPortTable((await this.#read()).data)
  }

  async #update (plan: (table: PortTable) => PortPlan): Promise<PortOutcome> {
    for (let attempt = 1; ; attempt++) {
      const cm = await this.#read()
      const p = plan(readPortTable(cm.data))
      if (p.data === undefined) return p.outcome
      try {
        await this.#ctx.core.replaceNamespacedConfigMap({
          name: PORTS_CONFIGMAP,
          namespace: this.#ctx.namespace,
          body: { ...cm, data: { ...p.data } }
        })
        return p.outcome
      } catch (err) {
        if (statusOf(err) !== 409 || attempt >= MAX_ATTEMPTS) throw err
        this.#log.debug({ attempt }, `${PORTS_CONFIGMAP} changed under us; re-reading`)
        // A little jitter so two losers do not collide again in lockstep.
        await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 20 * attempt)))
      }
    }
  }

  async #read (): Promise<V1ConfigMap> {
    const { core, namespace } = this.#ctx
    try {
      return await core.readNamespacedConfigMap({ name: PORTS_CONFIGMAP, namespace })
    } catch (err) {
      if (statusOf(err) !== 404) throw err
    }
    try {
      return await core.createNamespacedConfigMap({
        namespace,
        body: { metadata: { name: PORTS_CONFIGMAP, namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE } }, data: {} }
      })
    } catch (err) {
      // Another replica created it first: use theirs.
      if (statusOf(err) !== 409) throw err
      return await core.readNamespacedConfigMap({ name: PORTS_CONFIGMAP, namespace })
    }
  }
}
