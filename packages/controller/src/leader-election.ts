/**
 * Leader election on a coordination.k8s.io/v1 Lease, the protocol
 * client-go's leaderelection package speaks (so `kubectl get lease` reads it
 * the usual way):
 *
 *  - a Lease that is absent, has no holder, or whose record has not changed
 *    for leaseDuration is taken: holderIdentity, acquireTime, renewTime,
 *    leaseDurationSeconds, leaseTransitions + 1;
 *  - the holder renews every leaseDuration/3;
 *  - every write carries the resourceVersion it read, so of two replicas
 *    racing for one Lease, the apiserver takes one write and answers the
 *    other 409 Conflict;
 *  - a holder whose renewals have failed for 2/3 of leaseDuration steps down
 *    ('lost') before any other replica may take over;
 *  - stop() clears holderIdentity so the next replica takes over at once.
 *
 * Expiry is judged on this process's clock from when the record was last
 * seen to change, never from the renewTime another machine wrote, so clock
 * skew between replicas does not matter.
 */
import { EventEmitter } from 'node:events'
import { V1MicroTime, type V1Lease } from '@kubernetes/client-node'
import { InvalidArgumentError, silentLogger, type Logger } from '@tower/mux'
import { statusOf } from './errors.ts'
import type { KubeContext } from './kube-context.ts'
import { CONTROLLER_LEASE, MANAGED_BY_LABEL, MANAGED_BY_VALUE } from './names.ts'

/** Options of {@link LeaderElector}. */
export interface LeaderElectorOptions {
  context: KubeContext
  /** This replica's identity (the Pod name), written as holderIdentity; 1-128 characters. */
  identity: string
  /** How long a Lease lasts without renewal, in milliseconds; at least 3000, whole seconds. Default 15 000. */
  leaseDurationMs?: number
  /** Lease name; default tower-controller. */
  name?: string
  logger?: Logger
}

/** Events: 'leading' when this replica took the Lease, 'lost' when it no longer holds it. */
export class LeaderElector extends EventEmitter {
  readonly #ctx: KubeContext
  readonly #identity: string
  readonly #durationMs: number
  readonly #name: string
  readonly #log: Logger
  #leading = false
  #stopped = true
  #timer: NodeJS.Timeout | undefined
  #loop: Promise<void> | undefined
  /** The last Lease read or written, and when (this clock) its record last changed. */
  #observed: { resourceVersion: string, holder: string, at: number } | undefined
  /** When this replica last renewed successfully (this clock, ms). */
  #renewedAt = 0

  constructor (opts: LeaderElectorOptions) {
    super()
    if (typeof opts.identity !== 'string' || opts.identity.length < 1 || opts.identity.length > 128) {
      throw new InvalidArgumentError('leader election: identity must be 1-128 characters')
    }
    const d = opts.leaseDurationMs ?? 15_000
    if (!Number.isSafeInteger(d) || d < 3000 || d % 1000 !== 0) {
      throw new InvalidArgumentError(`leader election: leaseDurationMs must be whole seconds, at least 3000, got ${String(d)}`)
    }
    this.#ctx = opts.context
    this.#identity = opts.identity
    this.#durationMs = d
    this.#name = opts.name ?? CONTROLLER_LEASE
    this.#log = (opts.logger ?? silentLogger).child({ component: 'leader-election', lease: this.#name })
  }

  /** True while this replica holds the Lease. */
  get leading (): boolean { return this.#leading }

  /** Starts trying to acquire (and then renewing) the Lease. */
  start (): void {
    if (!this.#stopped) return
    this.#stopped = false
    this.#tick()
  }

  /** Stops; a holder clears holderIdentity first so another replica need not wait for expiry. */
  async stop (): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    clearTimeout(this.#timer)
    await this.#loop
    if (this.#leading) {
      try {
        await this.#release()
      } catch (err) {
        this.#log.warn({ err }, 'could not release the lease; another replica takes over when it expires')
      }
      this.#setLeading(false)
    }
  }

  #tick (): void {
    this.#loop = this.#attempt().finally(() => {
      this.#loop = undefined
      if (this.#stopped) return
      // Candidates retry a bit off the holder's beat, with jitter, so two of them rarely collide.
      const period = this.#durationMs / 3
      const delay = this.#leading ? period : period * (0.5 + Math.random() * 0.5)
      this.#timer = setTimeout(() => this.#tick(), delay)
      this.#timer.unref()
    })
  }

  async #attempt (): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    try {
      // A request to a black-holed apiserver may hang for minutes: give up on it after a renew period.
      const deadline = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => { reject(new Error('lease request timed out')) }, this.#durationMs / 3)
      })
      const ok = await Promise.race([this.#tryAcquireOrRenew(), deadline])
      if (ok) {
        this.#renewedAt = Date.now()
        this.#setLeading(true)
        return
      }
      this.#setLeading(false)
    } catch (err) {
      if (!this.#leading) {
        this.#log.debug({ err }, 'lease not reachable; trying again')
        return
      }
      // Renewal failed: keep leading only until the renew deadline, well before others may take over.
      const since = Date.now() - this.#renewedAt
      if (since >= (this.#durationMs * 2) / 3) {
        this.#log.error({ err, sinceMs: since }, 'lease renewal failed past the deadline; stepping down')
        this.#setLeading(false)
      } else {
        this.#log.warn({ err, sinceMs: since }, 'lease renewal failed; retrying')
      }
    } finally {
      clearTimeout(timer)
    }
  }

  #setLeading (v: boolean): void {
    if (this.#leading === v) return
    this.#leading = v
    this.#log.info({ identity: this.#identity }, v ? 'became the leader' : 'no longer the leader')
    this.emit(v ? 'leading' : 'lost')
  }

  /** True when this replica holds the Lease after the call. */
  async #tryAcquireOrRenew (): Promise<boolean> {
    const { coordination, namespace } = this.#ctx
    const now = Date.now()
    let lease: V1Lease
    try {
      lease = await coordination.readNamespacedLease({ name: this.#name, namespace })
    } catch (err) {
      if (statusOf(err) !== 404) throw err
      try {
        const created = await coordination.createNamespacedLease({ namespace, body: this.#record(undefined, now) })
        this.#observe(created, now)
        return true
      } catch (e) {
        if (statusOf(e) === 409) return false
        throw e
      }
    }
    this.#observe(lease, now)
    const holder = lease.spec?.holderIdentity ?? ''
    const mine = holder === this.#identity
    const observedAt = this.#observed?.at ?? now
    const durationMs = leaseMs(lease.spec?.leaseDurationSeconds) ?? this.#durationMs
    if (!mine && holder !== '' && now - observedAt < durationMs) return false
    try {
      const updated = await coordination.replaceNamespacedLease({ name: this.#name, namespace, body: this.#record(lease, now) })
      this.#observe(updated, now)
      return true
    } catch (err) {
      // Someone else wrote the Lease since we read it: they renewed, or won the race to take it.
      if (statusOf(err) === 409) return false
      throw err
    }
  }

  /** The Lease this replica writes: a renewal of its own record, or a takeover of `old` (undefined: create). */
  #record (old: V1Lease | undefined, now: number): V1Lease {
    const spec = old?.spec ?? {}
    const mine = spec.holderIdentity === this.#identity
    const time = new V1MicroTime(now)
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: old?.metadata ?? { name: this.#name, namespace: this.#ctx.namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE } },
      spec: {
        ...spec,
        holderIdentity: this.#identity,
        leaseDurationSeconds: this.#durationMs / 1000,
        acquireTime: mine && spec.acquireTime !== undefined ? new V1MicroTime(spec.acquireTime) : time,
        renewTime: time,
        leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : old === undefined ? 0 : nonNegative(spec.leaseTransitions) + 1
      }
    }
  }

  #observe (lease: V1Lease, now: number): void {
    const resourceVersion = lease.metadata?.resourceVersion ?? ''
    const holder = lease.spec?.holderIdentity ?? ''
    if (this.#observed?.resourceVersion !== resourceVersion) this.#observed = { resourceVersion, holder, at: now }
  }

  async #release (): Promise<void> {
    const { coordination, namespace } = this.#ctx
    const lease = await coordination.readNamespacedLease({ name: this.#name, namespace })
    if (lease.spec?.holderIdentity !== this.#identity) return
    const time = new V1MicroTime()
    await coordination.replaceNamespacedLease({
      name: this.#name,
      namespace,
      // client-go's ReleaseOnCancel: no holder, a 1 s duration, so any candidate takes it on its next try.
      body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: time, acquireTime: time } }
    })
    this.#log.info({}, 'released the lease')
  }
}

function leaseMs (seconds: unknown): number | undefined {
  return typeof seconds === 'number' && Number.isInteger(seconds) && seconds > 0 && seconds <= 3600 ? seconds * 1000 : undefined
}

function nonNegative (n: unknown): number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : 0
}
