// Wiring for the h2 tests: an HTTP/2 test upstream + the fake server + an
// Agent between them, and helpers to read watches through the tunnel.
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import type { TestContext } from 'node:test'
import { Agent, type AgentOptions } from '../src/index.ts'
import { startFakeServer, type FakeServer } from './fixtures/fake-server.ts'
import { startH2Upstream, type H2TestUpstream, type H2UpstreamOptions } from './fixtures/h2-upstream.ts'
import { captureLogger, JOIN_TOKEN, SA_TOKEN, type LogEntry } from './harness.ts'

export interface H2Rig {
  upstream: H2TestUpstream
  server: FakeServer
  agent: Agent
  logs: LogEntry[]
}

export async function h2Rig (t: TestContext, o: { upstream?: H2UpstreamOptions, agent?: Partial<AgentOptions> } = {}): Promise<H2Rig> {
  const upstream = await startH2Upstream(o.upstream)
  const server = await startFakeServer({ token: JOIN_TOKEN })
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
    await server.close()
    await agent.stop()
    await upstream.close()
  })
  const connected = once(agent, 'connected')
  agent.start()
  await connected
  await server.nextSession()
  return { upstream, server, agent, logs: logger.entries }
}

/** A watch through the tunnel: its response, and its body read line by line. */
export interface TunnelWatch {
  res: IncomingMessage
  nextLine (): Promise<string>
  /** Resolves `end` on a clean end, `error` when the stream was reset or aborted. */
  outcome: Promise<'end' | 'error'>
  destroy (): void
}

export async function openWatch (server: FakeServer, path = '/watch?watch=true'): Promise<TunnelWatch> {
  const req = server.request(path)
  req.on('error', () => {})
  req.end()
  const [res] = await once(req, 'response') as [IncomingMessage]
  res.setEncoding('utf8')
  let buf = ''
  let wake: (() => void) | undefined
  res.on('data', (c: string) => {
    buf += c
    wake?.()
  })
  const outcome = new Promise<'end' | 'error'>((resolve) => {
    res.once('end', () => resolve('end'))
    res.once('error', () => resolve('error'))
    res.once('aborted', () => resolve('error'))
    res.once('close', () => resolve(res.complete ? 'end' : 'error'))
  })
  return {
    res,
    outcome,
    async nextLine () {
      while (!buf.includes('\n')) {
        const more = new Promise<void>((resolve) => { wake = resolve })
        const done = await Promise.race([more.then(() => false), outcome.then(() => true)])
        if (done && !buf.includes('\n')) throw new Error(`watch ended (${await outcome}) before a full line`)
      }
      const i = buf.indexOf('\n')
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      return line
    },
    destroy () {
      req.destroy()
    }
  }
}

/** Polls `check` until it returns true or `ms` pass (for state that settles asynchronously). */
export async function until (check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
