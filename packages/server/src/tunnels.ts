/**
 * The live agent sessions, per cluster. New streams are spread round-robin
 * over a cluster's agents; when one dies its streams die with it and new
 * streams go to the survivors.
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
  /** The mux session over its WebSocket. */
  session: Session
}

/** Emits `change` whenever an agent joins or leaves. */
export class TunnelPool extends EventEmitter {
  readonly #byCluster = new Map<string, AgentTunnel[]>()
  readonly #next = new Map<string, number>()
  #streamSeq = 0

  /** Adds a tunnel; it is removed by itself when its session closes. */
  add (cluster: string, tunnel: AgentTunnel): void {
    const list = this.#byCluster.get(cluster) ?? []
    list.push(tunnel)
    this.#byCluster.set(cluster, list)
    tunnel.session.once('close', () => this.#remove(cluster, tunnel))
    this.emit('change')
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
   * The next of the cluster's agents, round-robin, skipping sessions that
   * are closing. Throws TOWER_ERR_NO_AGENT when none can take a stream.
   */
  pick (cluster: string): AgentTunnel {
    const list = this.#byCluster.get(cluster)
    if (list !== undefined) {
      for (let i = 0; i < list.length; i++) {
        const n = ((this.#next.get(cluster) ?? 0) + 1) % list.length
        this.#next.set(cluster, n)
        if (!list[n]!.session.closed) return list[n]!
      }
    }
    throw new NoAgentError(cluster)
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

  /** Closes every session of a cluster (cluster removed). */
  closeCluster (cluster: string): void {
    for (const t of this.tunnels(cluster)) t.session.close()
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
    if (i >= 0) list.splice(i, 1)
    if (list.length === 0) this.#byCluster.delete(cluster)
    this.emit('change')
  }
}
