// Wiring for agent tests: test upstream + fake server + an Agent between them.
import { once } from 'node:events'
import type { TestContext } from 'node:test'
import type { Logger } from '@tower/mux'
import { Agent, type AgentOptions } from '../src/index.ts'
import { startTestUpstream, type TestUpstream } from './fixtures/upstream.ts'
import { startFakeServer, type FakeServer, type FakeServerOptions } from './fixtures/fake-server.ts'

export interface LogEntry {
  level: string
  msg: string | undefined
  obj: Record<string, unknown>
}

/** A Logger that records entries (bindings merged in), for assertions on logs. */
export function captureLogger (entries: LogEntry[] = [], bindings: Record<string, unknown> = {}): Logger & { entries: LogEntry[] } {
  const at = (level: string) => (obj: object, msg?: string): void => {
    entries.push({ level, msg, obj: { ...bindings, ...obj } })
    if (process.env.TOWER_TEST_LOG !== undefined) console.error(level, msg, JSON.stringify({ ...bindings, ...obj }))
  }
  return {
    entries,
    trace: at('trace'),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (b: Record<string, unknown>) => captureLogger(entries, { ...bindings, ...b })
  }
}

export const JOIN_TOKEN = 'join-token-0123456789'
export const SA_TOKEN = 'sa-token-abc'

export interface Rig {
  upstream: TestUpstream
  server: FakeServer
  agent: Agent
  logs: LogEntry[]
}

export async function rig (t: TestContext, o: { agent?: Partial<AgentOptions>, server?: Partial<FakeServerOptions>, upstream?: TestUpstream } = {}): Promise<Rig> {
  const upstream = o.upstream ?? await startTestUpstream()
  const server = await startFakeServer({ token: JOIN_TOKEN, ...o.server })
  const logger = captureLogger()
  const agent = new Agent({
    serverUrl: server.url,
    allowInsecureWs: true,
    cluster: 'test',
    token: JOIN_TOKEN,
    upstream: { kind: 'url', url: upstream.url, caPem: upstream.caPem, token: SA_TOKEN },
    reconnectMinMs: 10,
    reconnectMaxMs: 50,
    logger,
    ...o.agent
  })
  t.after(async () => {
    // server first: it ends the session, so stop() need not wait for streams
    // that the test left open to drain
    await server.close()
    await agent.stop()
    if (o.upstream === undefined) await upstream.close()
  })
  const connected = once(agent, 'connected')
  agent.start()
  await connected
  await server.nextSession()
  return { upstream, server, agent, logs: logger.entries }
}
