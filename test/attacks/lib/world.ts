/**
 * The world an attack runs in: one real `tower server` process with three
 * member clusters, each with a real agent in front of its own upstream
 * fixture:
 *
 *   alpha  proxy mode, with impersonation: the cluster under attack
 *   beta   proxy mode: the bystander that must keep working
 *   pass   passthrough mode
 *
 * plus `rogue`, a proxy cluster with no agent, for attackers that hold a
 * valid join token (they become its only agent, so nothing routes a real
 * caller to them by accident).
 *
 * {@link World.survived} is the check after every attack: the process is
 * alive, its fds come back to the baseline and its memory stays near it,
 * and the clusters still serve.
 */
import assert from 'node:assert/strict'
import https from 'node:https'
import tls from 'node:tls'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import { Agent } from '@tower/agent'
import { silentLogger, type Logger } from '@tower/mux'
import { startUpstream, type Upstream } from '../../fixtures/upstream.ts'
import { TowerProcess, type ClusterInfo, type TowerProcessOptions } from './tower-process.ts'
import type { ProcSnapshot } from './proc.ts'
import { RawAgentConnection } from './raw-agent.ts'

/** A member cluster with its agent and upstream. */
export interface Member extends ClusterInfo {
  upstream: Upstream
  agent: Agent
  /** A client certificate issued for it (proxy mode). */
  cert?: { certPem: string, keyPem: string }
}

/** Bounds of {@link World.survived}. */
export interface SurvivalBounds {
  /** fds allowed above the baseline once the attack's connections are gone. Default 8. */
  fdSlack?: number
  /** RSS allowed above the baseline, in MiB. Default 96. */
  rssSlackMiB?: number
  /** How long fds may take to come back, in milliseconds. Default 15000. */
  settleMs?: number
  /** Clusters that must still serve. Default all three. */
  serves?: Array<'alpha' | 'beta' | 'pass'>
}

const MiB = 1024 * 1024
let markers = 0

/** A running world. */
export class World {
  readonly tower: TowerProcess
  readonly alpha: Member
  readonly beta: Member
  readonly pass: Member
  readonly rogue: ClusterInfo

  private constructor (tower: TowerProcess, alpha: Member, beta: Member, pass: Member, rogue: ClusterInfo) {
    this.tower = tower
    this.alpha = alpha
    this.beta = beta
    this.pass = pass
    this.rogue = rogue
  }

  /** Starts the server, registers the clusters and connects their agents. */
  static async start (opts: TowerProcessOptions = {}): Promise<World> {
    const tower = await TowerProcess.start(opts)
    try {
      const [alpha, beta, pass, rogue] = [
        await tower.addCluster('alpha', 'proxy', ['--impersonate']),
        await tower.addCluster('beta'),
        await tower.addCluster('pass', 'passthrough'),
        await tower.addCluster('rogue')
      ]
      const member = async (c: ClusterInfo, withCert: boolean): Promise<Member> => {
        const upstream = await startUpstream()
        const agent = await connectAgent(tower, c, upstream)
        return { ...c, upstream, agent, cert: withCert ? await tower.callerCert(c.name) : undefined }
      }
      return new World(tower, await member(alpha, true), await member(beta, true), await member(pass, false), rogue)
    } catch (err) {
      await tower.stop()
      throw err
    }
  }

  /** This world while its server runs; a fresh one (this one stopped) once the server died. */
  async revived (opts: TowerProcessOptions = {}): Promise<World> {
    if (this.tower.alive()) return this
    await this.stop()
    return await World.start(opts)
  }

  /** Stops agents, upstreams and the server. */
  async stop (): Promise<void> {
    for (const m of [this.alpha, this.beta, this.pass]) {
      await m.agent.stop()
      await m.upstream.close()
    }
    await this.tower.stop()
  }

  /** The baseline before an attack: fds and RSS now; resets the peak-RSS counter. */
  baseline (): ProcSnapshot {
    this.tower.resetPeak()
    return this.tower.snapshot()
  }

  /** TLS options of a proxy cluster's port, with the member's certificate unless told otherwise. */
  tlsTo (m: ClusterInfo, cert: { certPem: string, keyPem: string } | null | undefined = (m as Member).cert): https.RequestOptions {
    return { host: '127.0.0.1', port: m.port, ca: this.tower.caPem, servername: 'localhost', cert: cert?.certPem, key: cert?.keyPem, agent: false }
  }

  /** GET through a proxy cluster's port, with its certificate. */
  get (m: ClusterInfo, path = '/echo', headers: Record<string, string> = {}, cert?: { certPem: string, keyPem: string } | null, timeoutMs = 20_000): Promise<Answer> {
    return request({ ...this.tlsTo(m, cert === undefined ? (m as Member).cert : cert), path, headers, timeoutMs })
  }

  /** GET through the passthrough port: TLS end to end with its upstream. */
  getPassthrough (path = '/echo'): Promise<Answer> {
    return request({ host: '127.0.0.1', port: this.pass.port, ca: this.pass.upstream.caPem, path, agent: false })
  }

  /**
   * Waits until the server's log has caught up with now: its logger buffers
   * asynchronously, so lines about an attack may arrive after the attack's
   * last answer. A new agent of the rogue cluster with a unique id is logged
   * at info; once a line with that id arrives, every earlier line has too.
   */
  async logCaughtUp (): Promise<void> {
    const agentId = `marker-${++markers}`
    const seen = this.tower.log.waitFor((l) => l.agentId === agentId, 20_000, `log line of agent ${agentId}`)
    const c = await RawAgentConnection.connect(this.tower.agentPort, this.tower.caPem, this.rogue.name, this.rogue.token, { agentId })
    try {
      await seen
    } finally {
      c.destroy()
    }
  }

  /** Asserts that the named clusters serve a request now. */
  async serves (names: Array<'alpha' | 'beta' | 'pass'> = ['alpha', 'beta', 'pass']): Promise<void> {
    for (const name of names) {
      const r = name === 'pass' ? await this.getPassthrough() : await this.get(this[name])
      assert.equal(r.status, 200, `cluster ${name} must still serve (got ${r.status} ${r.body.slice(0, 200)})`)
    }
  }

  /**
   * The check after an attack (see the module header). fds are polled until
   * they are back within the slack, because the server closes sockets
   * asynchronously; the poll is bounded by `settleMs`.
   */
  async survived (base: ProcSnapshot, bounds: SurvivalBounds = {}): Promise<{ fds: number, rss: number, peakRss: number }> {
    const fdSlack = bounds.fdSlack ?? 8
    const rssSlack = (bounds.rssSlackMiB ?? 96) * MiB
    assert.ok(this.tower.alive(), `the server process must survive: ${this.tower.exitInfo()}`)
    const peakRss = this.tower.peakRss()
    let now = this.tower.snapshot()
    const deadline = Date.now() + (bounds.settleMs ?? 15_000)
    while (now.fds > base.fds + fdSlack && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      assert.ok(this.tower.alive(), `the server process must survive: ${this.tower.exitInfo()}`)
      now = this.tower.snapshot()
    }
    assert.ok(now.fds <= base.fds + fdSlack, `server fds must come back to the baseline: ${base.fds} before, ${now.fds} after (slack ${fdSlack})`)
    assert.ok(peakRss <= base.rss + rssSlack, `server peak RSS must stay within ${rssSlack / MiB} MiB of the baseline: ${mb(base.rss)} before, peak ${mb(peakRss)}`)
    await this.serves(bounds.serves)
    assert.ok(this.tower.alive(), `the server process must survive: ${this.tower.exitInfo()}`)
    return { fds: now.fds, rss: now.rss, peakRss }
  }
}

/** MiB, rounded, for messages. */
export function mb (bytes: number): string {
  return `${Math.round(bytes / MiB)} MiB`
}

/** Connects a library agent for `c` towards `upstream`; resolves once connected. */
export async function connectAgent (tower: TowerProcess, c: ClusterInfo, upstream: Upstream, agentId?: string, logger: Logger = silentLogger): Promise<Agent> {
  const agent = new Agent({
    serverUrl: `wss://127.0.0.1:${tower.agentPort}`,
    cluster: c.name,
    token: c.token,
    caPem: tower.caPem,
    serverName: 'localhost',
    upstream: { kind: 'url', url: upstream.url, caPem: upstream.caPem, token: 'agent-sa-token' },
    reconnectMinMs: 50,
    reconnectMaxMs: 500,
    logger,
    ...(agentId !== undefined ? { agentId } : {})
  })
  const connected = once(agent, 'connected')
  agent.start()
  await connected
  return agent
}

/** A response, read whole. */
export interface Answer { status: number, headers: IncomingMessage['headers'], body: string }

/** One HTTPS request, body read whole; a transport error, or no response within `timeoutMs`, rejects. */
export async function request (opts: https.RequestOptions & { body?: string, timeoutMs?: number }): Promise<Answer> {
  const req = https.request(opts)
  if (opts.timeoutMs !== undefined) {
    const ms = opts.timeoutMs
    const timer = setTimeout(() => req.destroy(new Error(`no response within ${ms} ms`)), ms)
    req.once('close', () => clearTimeout(timer))
  }
  req.end(opts.body)
  const [res] = await once(req, 'response') as [IncomingMessage]
  const chunks: Buffer[] = []
  for await (const c of res) chunks.push(c as Buffer)
  return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }
}

/** Opens a TLS connection to a cluster port (or the agent endpoint) and resolves once secure. */
export async function tlsConnect (port: number, caPem: string, cert?: { certPem: string, keyPem: string }): Promise<tls.TLSSocket> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca: caPem, servername: 'localhost', cert: cert?.certPem, key: cert?.keyPem })
  socket.on('error', () => {})
  await Promise.race([once(socket, 'secureConnect'), once(socket, 'close').then(() => { throw new Error('closed during TLS') })])
  return socket
}
