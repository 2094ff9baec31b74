/**
 * A rogue Tower server, for attacks on a real agent: it accepts any agent
 * that dials it (TLS with its own CA), runs the mux as the server side
 * does, and then writes whatever it likes on the streams it opens, preamble
 * and request bytes included. And the real `tower agent` CLI process to
 * point at it.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import https from 'node:https'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { Session } from '@tower/mux'
import { createCa, issueServerCert } from '@tower/pki'
import { AGENT_PATH, SUBPROTOCOL, acceptUpgrade, sessionOptions, wsStream } from '@tower/transport'
import { LogCapture, TOWER_ROOT } from './tower-process.ts'
import { isAlive } from './proc.ts'
import type { Upstream } from '../../fixtures/upstream.ts'

/** A listening rogue server; `session()` resolves with the next agent's session. */
export interface RogueServer {
  port: number
  caPem: string
  /** The session of the next agent that connects (or the current one). */
  session: () => Promise<Session>
  close: () => Promise<void>
}

/** Starts the rogue server on 127.0.0.1, port 0. */
export async function startRogueServer (): Promise<RogueServer> {
  const ca = createCa({ commonName: 'rogue-ca', validityDays: 2 })
  const cert = issueServerCert(ca, { commonName: 'rogue', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityDays: 2 })
  let current: Session | undefined
  let waiters: Array<(s: Session) => void> = []
  const sockets = new Set<Duplex>()
  const server = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (_req, res) => res.writeHead(404).end())
  server.on('upgrade', (req, socket: Duplex, head: Buffer) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    if (new URL(req.url ?? '/', 'https://x').pathname !== AGENT_PATH) { socket.destroy(); return }
    acceptUpgrade(req, socket, SUBPROTOCOL)
    const session = new Session(wsStream(socket as Socket, { role: 'server', head }), { ...sessionOptions(), client: true })
    current = session
    session.once('close', () => { if (current === session) current = undefined })
    const w = waiters
    waiters = []
    for (const resolve of w) resolve(session)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as AddressInfo).port,
    caPem: ca.certPem,
    session: () => current !== undefined && !current.closed ? Promise.resolve(current) : new Promise((resolve) => waiters.push(resolve)),
    close: async () => {
      current?.destroy()
      for (const s of sockets) s.destroy()
      server.close()
      server.closeAllConnections()
      await once(server, 'close')
    }
  }
}

/** A running `tower agent` process. */
export interface AgentProcess {
  child: ChildProcess
  log: LogCapture
  alive: () => boolean
  stop: () => Promise<void>
}

/** Starts `tower agent` against `serverPort` (trusting `serverCaPem`), forwarding to `upstream`. */
export function startAgentProcess (serverPort: number, serverCaPem: string, upstream: Upstream, cluster = 'target'): AgentProcess {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-agent-'))
  const file = (name: string, text: string): string => {
    const p = path.join(dir, name)
    fs.writeFileSync(p, text, { mode: 0o600 })
    return p
  }
  const args = [path.join(TOWER_ROOT, 'packages/cli/bin/tower.js'), 'agent',
    '--server', `wss://127.0.0.1:${serverPort}`, '--cluster', cluster,
    '--token-file', file('token', 'tower-agent_' + 'T'.repeat(43)),
    '--ca-file', file('ca.crt', serverCaPem),
    '--upstream', upstream.url, '--upstream-ca-file', file('upstream-ca.crt', upstream.caPem),
    '--upstream-token-file', file('upstream-token', 'agent-sa-token'),
    '--reconnect-min-ms', '50', '--reconnect-max-ms', '500', '--log-level', 'info']
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TOWER_') && !/_proxy$/i.test(k)) env[k] = v
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env })
  const log = new LogCapture()
  child.stdout!.setEncoding('utf8').on('data', (c: string) => log.push(c))
  child.stderr!.resume()
  let exited = false
  child.once('exit', () => { exited = true })
  return {
    child,
    log,
    alive: () => !exited && isAlive(child.pid!),
    stop: async () => {
      if (!exited) {
        const gone = once(child, 'exit')
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
        await gone
        clearTimeout(timer)
      }
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** A stream preamble with an arbitrary JSON body (the real encoder writes only `id`). */
export function preamble (kind: number, body: object): Buffer {
  const json = Buffer.from(JSON.stringify(body))
  const head = Buffer.from([1, kind, 0, 0])
  head.writeUInt16BE(json.length, 2)
  return Buffer.concat([head, json])
}

/**
 * Opens a stream, writes `bytes`, and collects what comes back until the
 * agent ends or resets the stream, or `timeoutMs` passes.
 */
export async function exchange (session: Session, bytes: Buffer, timeoutMs = 5000): Promise<{ text: string, reset: boolean, timedOut: boolean }> {
  const stream = session.open()
  const chunks: Buffer[] = []
  let reset = false
  stream.on('data', (c: Buffer) => chunks.push(c))
  stream.write(bytes)
  let timer: NodeJS.Timeout | undefined
  const timedOut = await new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), timeoutMs)
    stream.once('end', () => resolve(false))
    stream.once('error', () => { reset = true; resolve(false) })
    stream.once('close', () => resolve(false))
  })
  clearTimeout(timer)
  stream.destroy()
  return { text: Buffer.concat(chunks).toString('latin1'), reset, timedOut }
}
