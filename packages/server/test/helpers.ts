/**
 * Shared setup of the server tests: a registry in a temp directory, a pino
 * logger writing into a sink the test can read, a TowerServer on 127.0.0.1
 * with OS-chosen ports, and a minimal agent built from the transport
 * primitives (the server package cannot import @tower/agent).
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { once } from 'node:events'
import { Writable, type Duplex } from 'node:stream'
import type { Socket } from 'node:net'
import { pino } from 'pino'
import { Session } from '@tower/mux'
import { AGENT_PATH, HEADER_AGENT_ID, HEADER_CLUSTER, SUBPROTOCOL, requestUpgrade, sessionOptions, wsStream } from '@tower/transport'
import { FileRegistry } from '../src/registry/file-registry.ts'
import { TowerServer } from '../src/server.ts'
import type { ServerOptions } from '../src/config.ts'

type After = { after: (fn: () => unknown) => void }

/** Log lines captured as parsed objects, plus the raw text of each line. */
export class LogSink extends Writable {
  readonly lines: Array<Record<string, any>> = []
  readonly raw: string[] = []
  override _write (chunk: Buffer, _enc: string, cb: () => void): void {
    for (const line of chunk.toString().split('\n')) {
      if (line === '') continue
      this.raw.push(line)
      this.lines.push(JSON.parse(line))
    }
    cb()
  }

  /** Lines whose msg matches, optionally only those at one pino level. */
  find (msg: string | RegExp, level?: 'debug' | 'info' | 'warn' | 'error'): Array<Record<string, any>> {
    const n = level === undefined ? undefined : pino.levels.values[level]
    return this.lines.filter((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(String(l.msg))) && (n === undefined || l.level === n))
  }

  /** Resolves once a line whose msg matches has been written. */
  async waitFor (msg: string | RegExp, deadlineMs = 5000): Promise<Record<string, any>> {
    await until(() => this.find(msg).length > 0, deadlineMs, `log line ${String(msg)}`)
    return this.find(msg)[0]!
  }
}

/** A temp state directory removed after the test. */
export function tmpStateDir (t: After): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-server-test-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return path.join(dir, 'state')
}

/** A logger at `level` into a fresh sink. */
export function sinkLogger (level = 'debug'): { logs: LogSink, logger: pino.Logger } {
  const logs = new LogSink()
  return { logs, logger: pino({ level }, logs) }
}

/** A started server on a fresh registry; stopped after the test. */
export interface TestServer {
  server: TowerServer
  registry: FileRegistry
  logs: LogSink
  logger: pino.Logger
  stateDir: string
}

/** Starts a TowerServer on a temp state directory with OS-chosen ports. */
export async function startServer (t: After, opts: Partial<ServerOptions> = {}, level = 'debug'): Promise<TestServer> {
  const stateDir = tmpStateDir(t)
  const { logs, logger } = sinkLogger(level)
  const registry = await FileRegistry.open({ stateDir, server: { advertiseHost: '127.0.0.1', portRange: '0' }, logger })
  const server = new TowerServer(registry, { listenHost: '127.0.0.1', listenPort: 0, clusterHost: '127.0.0.1', drainTimeoutMs: 200, ...opts, logger })
  await server.start()
  t.after(() => server.stop())
  return { server, registry, logs, logger, stateDir }
}

/** A minimal agent: one WebSocket, one mux session (the server is the yamux client). */
export interface TestAgent {
  session: Session
  socket: Socket
  /** The WebSocket byte stream under the session; `end()` sends Close(1000). */
  transport: Duplex
}

/** Dials the agent endpoint as an agent of `cluster`; rejects with the HandshakeError on refusal. */
export async function dialAgent (ts: TestServer, cluster: string, token: string, agentId = 'agent-1', extra: Record<string, string> = {}): Promise<TestAgent> {
  const pending = requestUpgrade({
    url: new URL(`wss://127.0.0.1:${ts.server.agentPort}${AGENT_PATH}`),
    protocol: SUBPROTOCOL,
    headers: { authorization: `Bearer ${token}`, [HEADER_CLUSTER]: cluster, [HEADER_AGENT_ID]: agentId, ...extra },
    ca: ts.registry.ca.certPem,
    servername: 'localhost',
    timeoutMs: 5000
  })
  const { socket, head } = await pending.done
  const transport = wsStream(socket, { role: 'client', head })
  const session = new Session(transport, { ...sessionOptions(), client: false })
  return { session, socket, transport }
}

/**
 * Sends one raw HTTP/1.1 request over TLS and resolves with the whole answer
 * (status line, headers and body as text) once the server closes.
 */
export async function rawTlsRequest (port: number, caPem: string, request: string): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca: caPem, servername: 'localhost' })
  socket.on('error', () => {})
  await once(socket, 'secureConnect')
  socket.write(request)
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  await once(socket, 'close')
  return Buffer.concat(chunks).toString()
}

/** The status code of a raw HTTP answer. */
export function statusOf (answer: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0)
}

/** Resolves once `cond()` is true; rejects naming `what` after `deadlineMs`. */
export async function until (cond: () => boolean, deadlineMs: number, what: string): Promise<void> {
  const end = Date.now() + deadlineMs
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** Number of file descriptors this process holds open. */
export function openFds (): number {
  return fs.readdirSync('/proc/self/fd').length
}
