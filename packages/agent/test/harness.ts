// Wiring for agent tests: test upstream + fake server + an Agent between them.
import { EventEmitter, once } from 'node:events'
import type { TestContext } from 'node:test'
import type { Logger } from '@tower/mux'
import { Agent, type AgentOptions } from '../src/index.ts'
import { startTestUpstream, type TestUpstream } from './fixtures/upstream.ts'
import { startFakeServer, type FakeServer, type FakeServerOptions } from './fixtures/fake-server.ts'

export interface LogEntry {
  level: string
  msg: string | undefined
  obj: Record<string, unknown>
  /** Keys bound by more than one child() in the chain, or bound and logged again: pino prints them twice. */
  duplicateKeys: string[]
}

/** Log entries as they are written: `logEvents(entries).on('entry', …)`. */
const emitters = new WeakMap<LogEntry[], EventEmitter>()
export function logEvents (entries: LogEntry[]): EventEmitter {
  let e = emitters.get(entries)
  if (e === undefined) {
    e = new EventEmitter()
    emitters.set(entries, e)
  }
  return e
}

/** Resolves with the first entry (already written or future) that matches. */
export async function waitForLog (entries: LogEntry[], match: (e: LogEntry) => boolean): Promise<LogEntry> {
  const found = entries.find(match)
  if (found !== undefined) return found
  return await new Promise((resolve) => {
    const ev = logEvents(entries)
    const on = (e: LogEntry): void => {
      if (!match(e)) return
      ev.off('entry', on)
      resolve(e)
    }
    ev.on('entry', on)
  })
}

/** A Logger that records entries (bindings merged in), for assertions on logs. */
export function captureLogger (entries: LogEntry[] = [], bindings: Record<string, unknown> = {}, bound: string[] = []): Logger & { entries: LogEntry[] } {
  const at = (level: string) => (obj: object, msg?: string): void => {
    const keys = [...bound, ...Object.keys(obj)]
    const duplicateKeys = [...new Set(keys.filter((k, i) => keys.indexOf(k) !== i))]
    const entry = { level, msg, obj: { ...bindings, ...obj }, duplicateKeys }
    entries.push(entry)
    logEvents(entries).emit('entry', entry)
    if (process.env.TOWER_TEST_LOG !== undefined) console.error(level, msg, JSON.stringify({ ...bindings, ...obj }))
  }
  return {
    entries,
    trace: at('trace'),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (b: Record<string, unknown>) => captureLogger(entries, { ...bindings, ...b }, [...bound, ...Object.keys(b)])
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
  if (o.upstream === undefined) t.after(() => upstream.close())
  const server = await startFakeServer({ token: JOIN_TOKEN, ...o.server })
  const ref: { agent?: Agent } = {}
  // server first: it ends the session, so stop() need not wait for streams
  // that the test left open to drain
  t.after(async () => {
    await server.close()
    await ref.agent?.stop()
  })
  const logger = captureLogger()
  const agent = ref.agent = new Agent({
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
  const connected = once(agent, 'connected')
  agent.start()
  await connected
  await server.nextSession()
  return { upstream, server, agent, logs: logger.entries }
}
