/**
 * The live agent sessions, per cluster. New streams are spread round-robin
 * over a cluster's agents; when one dies its streams die with it and new
 * streams go to the survivors.
 *
 * An agent is known by its cluster and its self-chosen agent id. When it
 * reconnects with the same id (after a network blip its old session may look
 * alive until keepalive gives up), the new session replaces the old one,
 * which is destroyed: the agent itself has given up on it.
 */
import { EventEmitter, once } from 'node:events'
import type { MuxStream, Session } from '@tower/mux'
import { encodePreamble, type StreamKind } from '@tower/transport'
import { NoAgentError } from './errors.ts'

/** One connected agent. */
export interface AgentTunnel {
  /** The agent's self-chosen instance id. */
  agentId: string
  /** Remote address of the agent's connection, for logs. */
  remote: string
  /** When it connected (ms since epoch). */
  since: number
  /** The opaque id of the join token it authenticated with (ClusterRegistry.authenticateAgent). */
  credential: string
  /** The mux session over its WebSocket. */
  session: Session
  /**
   * The agent announced the hop frame (`tower-features: hframe`): plain
   * proxy requests cross as frames (stream kind `hframe`), not HTTP/1.1 text.
   */
  hopFrames?: boolean
}

/** Emits `change` (with the cluster's name) whenever an agent joins or leaves. */
export class TunnelPool extends EventEmitter {
  readonly #byCluster = new Map<string, AgentTunnel[]>()
  readonly #next = new Map<string, number>()
  // When each cluster's last agent left (ms since epoch).
  readonly #offlineSince = new Map<string, number>()
  readonly #startedAt = Date.now()
  #streamSeq = 0

  /**
   * Adds a tunnel; it is removed by itself when its session closes. Returns
   * the tunnel it replaced (same cluster and agent id), already destroyed.
   */
  add (cluster: string, tunnel: AgentTunnel): AgentTunnel | undefined {
    const list = this.#byCluster.get(cluster) ?? []
    const at = list.findIndex((t) => t.agentId === tunnel.agentId)
    const replaced = at >= 0 ? list.splice(at, 1)[0] : undefined
    list.push(tunnel)
    this.#byCluster.set(cluster, list)
    this.#offlineSince.delete(cluster)
    tunnel.session.once('close', () => this.#remove(cluster, tunnel))
    replaced?.session.destroy()
    this.emit('change', cluster)
    return replaced
  }

  /** Tunnels of one cluster (a copy). */
  tunnels (cluster: string): AgentTunnel[] {
    return [...(this.#byCluster.get(cluster) ?? [])]
  }

  /** Number of connected agents of a cluster. */
  count (cluster: string): number {
    return this.#byCluster.get(cluster)?.length ?? 0
  }

  /** Names of clusters with at least one agent. */
  clusters (): string[] {
    return [...this.#byCluster.keys()]
  }

  /**
   * When the last agent of `cluster` disconnected (ms since epoch), while
   * none is connected; undefined while one is, or when none ever was.
   */
  lastLeftAt (cluster: string): number | undefined {
    return this.count(cluster) > 0 ? undefined : this.#offlineSince.get(cluster)
  }

  /** Drops what is remembered of a cluster without agents (it was removed). */
  forget (cluster: string): void {
    if (this.count(cluster) === 0) this.#offlineSince.delete(cluster)
  }

  /**
   * Since when `cluster` has had no agent (ms since epoch), or undefined
   * while one is connected. A cluster never seen counts from the pool's start.
   */
  offlineSince (cluster: string): number | undefined {
    if (this.count(cluster) > 0) return undefined
    return this.#offlineSince.get(cluster) ?? this.#startedAt
  }

  /**
   * The next of the cluster's agents, round-robin, skipping sessions that
   * cannot open streams (closing, draining after a GoAway, or closed).
   * Throws TOWER_ERR_NO_AGENT when none can take a stream.
   */
  pick (cluster: string): AgentTunnel {
    const list = this.#byCluster.get(cluster)
    if (list !== undefined) {
      for (let i = 0; i < list.length; i++) {
        const n = ((this.#next.get(cluster) ?? 0) + 1) % list.length
        this.#next.set(cluster, n)
        if (list[n]!.session.canOpen) return list[n]!
      }
    }
    throw new NoAgentError(cluster, this.offlineSince(cluster) ?? Date.now())
  }

  /** Opens a stream on `tunnel` and writes the preamble. */
  openOn (tunnel: AgentTunnel, kind: StreamKind): MuxStream {
    const stream = tunnel.session.open()
    stream.write(encodePreamble({ kind, id: (++this.#streamSeq).toString(36) }))
    return stream
  }

  /** Opens a stream to the next of the cluster's agents (see {@link pick}). */
  open (cluster: string, kind: StreamKind): MuxStream {
    return this.openOn(this.pick(cluster), kind)
  }

  /**
   * Destroys, at once, every tunnel for which `evict` is true (a removed
   * cluster, a rotated-away token). Returns the tunnels destroyed.
   */
  evict (evict: (cluster: string, tunnel: AgentTunnel) => boolean): Array<{ cluster: string, tunnel: AgentTunnel }> {
    const out: Array<{ cluster: string, tunnel: AgentTunnel }> = []
    for (const [cluster, list] of this.#byCluster) {
      for (const tunnel of list) if (evict(cluster, tunnel)) out.push({ cluster, tunnel })
    }
    for (const { tunnel } of out) tunnel.session.destroy()
    return out
  }

  /**
   * Sends GoAway on every session, then destroys those still open after
   * `graceMs` (an exec session can last hours; shutdown cannot).
   */
  async closeAll (graceMs: number): Promise<void> {
    const sessions = this.clusters().flatMap((c) => this.tunnels(c)).map((t) => t.session)
    await Promise.all(sessions.map(async (session) => {
      if (session.closed) return
      const closed = once(session, 'close')
      session.close()
      const timer = setTimeout(() => session.destroy(), graceMs)
      await closed
      clearTimeout(timer)
    }))
  }

  #remove (cluster: string, tunnel: AgentTunnel): void {
    const list = this.#byCluster.get(cluster)
    if (list === undefined) return
    const i = list.indexOf(tunnel)
    if (i < 0) return
    list.splice(i, 1)
    if (list.length === 0) {
      this.#byCluster.delete(cluster)
      this.#next.delete(cluster)
      this.#offlineSince.set(cluster, Date.now())
    }
    this.emit('change', cluster)
  }
}
