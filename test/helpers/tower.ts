/**
 * Starts a Tower server and agents in the test process, on 127.0.0.1 with
 * OS-chosen ports, logging into a sink the test can read.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { once } from 'node:events'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Agent, type AgentOptions } from '@tower/agent'
import { FileRegistry, TowerServer, type ServerOptions } from '@tower/server'
import type { Upstream } from '../fixtures/upstream.ts'

/** Log lines captured from every component. */
export class LogSink extends Writable {
  readonly lines: Array<Record<string, any>> = []
  override _write (chunk: Buffer, _enc: string, cb: () => void): void {
    for (const line of chunk.toString().split('\n')) if (line !== '') this.lines.push(JSON.parse(line))
    cb()
  }

  /** Lines whose msg matches. */
  find (msg: string | RegExp): Array<Record<string, any>> {
    return this.lines.filter((l) => typeof msg === 'string' ? l.msg === msg : msg.test(l.msg))
  }
}

/** A running server with its registry and log sink. */
export interface TestTower {
  stateDir: string
  registry: FileRegistry
  server: TowerServer
  logs: LogSink
  logger: pino.Logger
  /** Restarts the server on the same state directory and ports. */
  restart: () => Promise<void>
  stop: () => Promise<void>
}

/** Starts a server on a fresh state directory with an ephemeral port range. */
export async function startTower (opts: { stateDir?: string, server?: Partial<ServerOptions> } = {}): Promise<TestTower> {
  const stateDir = opts.stateDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'tower-test-'))
  const logs = new LogSink()
  const logger = pino({ level: 'debug' }, logs)
  const registry = await FileRegistry.open({ stateDir, server: { advertiseHost: '127.0.0.1', portRange: '0' }, logger })
  let server = new TowerServer(registry, { listenHost: '127.0.0.1', listenPort: 0, clusterHost: '127.0.0.1', drainTimeoutMs: 500, ...opts.server, logger })
  await server.start()
  const t: TestTower = {
    stateDir,
    registry,
    get server () { return server },
    logs,
    logger,
    restart: async () => {
      const port = server.agentPort
      await server.stop()
      server = new TowerServer(registry, { listenHost: '127.0.0.1', clusterHost: '127.0.0.1', drainTimeoutMs: 500, ...opts.server, listenPort: port, logger })
      await server.start()
    },
    stop: async () => {
      await server.stop()
      fs.rmSync(stateDir, { recursive: true, force: true })
    }
  }
  return t
}

/** Registers a cluster and waits until its port is bound. */
export async function addCluster (tower: TestTower, name: string, opts: { mode?: 'proxy' | 'passthrough', impersonate?: boolean } = {}): Promise<{ token: string, port: number }> {
  const { token } = await tower.registry.add(name, opts)
  await tower.server.synced()
  const port = tower.server.clusterPort(name)
  if (port === undefined) throw new Error(`cluster ${name} did not get a port`)
  return { token, port }
}

/** Starts an agent for `cluster` towards `upstream`; resolves once connected. */
export async function startAgent (tower: TestTower, cluster: string, token: string, upstream: Upstream, extra: Partial<AgentOptions> = {}): Promise<Agent> {
  const agent = new Agent({
    serverUrl: `wss://127.0.0.1:${tower.server.agentPort}`,
    cluster,
    token,
    caPem: tower.registry.ca.certPem,
    upstream: { kind: 'url', url: upstream.url, caPem: upstream.caPem, token: 'agent-sa-token' },
    reconnectMinMs: 50,
    reconnectMaxMs: 500,
    logger: tower.logger,
    ...extra
  })
  const connected = once(agent, 'connected')
  agent.start()
  await connected
  return agent
}

/** Writes text to a temp file removed at the end of the test. */
export function tempFile (t: { after: (fn: () => void) => void }, name: string, text: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-file-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const p = path.join(dir, name)
  fs.writeFileSync(p, text, { mode: 0o600 })
  return p
}
