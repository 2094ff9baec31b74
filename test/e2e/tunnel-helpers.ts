/**
 * Tower as an operator runs it, for the end-to-end tunnel tests: `tower server` and `tower agent` as
 * separate processes of the real CLI (packages/cli/src/main.ts), the state directory shared with
 * `tower cluster add` and `tower kubeconfig`, and the member's ServiceAccount token made by TokenRequest.
 *
 * Processes are started with the harness's startProcess, so they are killed at exit at the latest; every
 * log line (JSON, pino) is also parsed and kept, so a test can wait for a line that appears after a
 * given point (e.g. the agent's second "connected to server" after a server restart).
 */
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, writeFileSync } from 'node:fs'
import { Agent as HttpsAgent, request, type RequestOptions } from 'node:https'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import { connect, isIP } from 'node:net'
import { join, resolve } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { KubeConfig } from '@kubernetes/client-node'
import type { ApiServer, ManagedProcess } from './harness/index.ts'
import { kubectl, kubectlOk, startKubectl, startProcess } from './harness/index.ts'
import { gcLaunchFlags } from '../../packages/cli/src/gc-flags.ts'

/** The CLI entry point: `node packages/cli/src/main.ts`. */
export const TOWER_MAIN = resolve(import.meta.dirname, '..', '..', 'packages', 'cli', 'src', 'main.ts')

/** The repository root (for deploy/). */
export const REPO_ROOT = resolve(import.meta.dirname, '..', '..')

/** Verbose output of every process line when TOWER_E2E_VERBOSE is set. */
export const verboseLog = process.env.TOWER_E2E_VERBOSE ? (line: string) => console.log(line) : undefined

/** Result of a finished `tower` command. */
export interface CliResult { code: number, stdout: string, stderr: string }

/** Run a short `tower` command to completion (30 s at most). Never throws for a non-zero exit. */
export function towerCli (args: string[], opts: { netns?: string, timeoutMs?: number } = {}): Promise<CliResult> {
  const [file, argv] = opts.netns === undefined
    ? [process.execPath, [TOWER_MAIN, ...args]]
    : ['ip', ['netns', 'exec', opts.netns, process.execPath, TOWER_MAIN, ...args]]
  return new Promise((resolvePromise) => {
    execFile(file, argv, { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolvePromise({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout, stderr })
    })
  })
}

/** Like {@link towerCli} but throws with stderr on a non-zero exit; returns stdout. */
export async function towerOk (args: string[], opts: { netns?: string, timeoutMs?: number } = {}): Promise<string> {
  const r = await towerCli(args, opts)
  if (r.code !== 0) throw new Error(`tower ${args.join(' ')} failed (code ${r.code}):\n${r.stderr}${r.stdout}`)
  return r.stdout
}

/** One parsed JSON log line. */
export type LogLine = Record<string, any>

/** A running `tower server` or `tower agent`, with its parsed log lines. */
export interface TowerProcess {
  name: string
  process: ManagedProcess
  /** Every JSON log line so far, in order. */
  lines: LogLine[]
  /**
   * Resolve with the first line matching `pred` whose index is >= `from` (default 0: also lines already
   * seen); reject after `timeoutMs` or when the process exits first.
   */
  waitFor (pred: (l: LogLine) => boolean, timeoutMs: number, from?: number): Promise<LogLine>
  /** SIGTERM (then SIGKILL after graceMs); resolves when it has exited. */
  stop (graceMs?: number): Promise<void>
}

/** Start `tower <args>` as a long-running process (optionally inside a network namespace). */
export function startTower (name: string, args: string[], opts: { netns?: string, logDir?: string } = {}): TowerProcess {
  const lines: LogLine[] = []
  const waiters = new Set<() => void>()
  const prefix = `[${name}] `
  // the GC launch flags bin/tower.js and the image start Tower with
  const proc = startProcess(name, process.execPath, [...gcLaunchFlags(), TOWER_MAIN, ...args], {
    netns: opts.netns,
    logDir: opts.logDir,
    log: (line) => {
      verboseLog?.(line)
      const text = line.startsWith(prefix) ? line.slice(prefix.length) : line
      if (!text.startsWith('{')) return
      try {
        lines.push(JSON.parse(text) as LogLine)
      } catch {
        return
      }
      for (const w of [...waiters]) w()
    }
  })
  const waitFor = (pred: (l: LogLine) => boolean, timeoutMs: number, from = 0): Promise<LogLine> =>
    new Promise((resolvePromise, reject) => {
      const check = (): void => {
        for (let i = from; i < lines.length; i++) {
          if (pred(lines[i]!)) { finish(); resolvePromise(lines[i]!); return }
        }
      }
      const finish = (): void => { clearTimeout(timer); waiters.delete(check) }
      const timer = setTimeout(() => {
        finish()
        reject(new Error(`${name}: no log line matching ${pred.toString()} within ${timeoutMs} ms:\n${proc.tail()}`))
      }, timeoutMs).unref()
      void proc.exited.then((st) => {
        if (!waiters.has(check)) return
        finish()
        reject(new Error(`${name} exited (code ${st.code}, signal ${st.signal}) while waiting for ${pred.toString()}:\n${proc.tail()}`))
      })
      waiters.add(check)
      check()
    })
  return { name, process: proc, lines, waitFor, stop: (graceMs) => proc.stop(graceMs) }
}

/** What `tower cluster add --output json` prints. */
export interface AddedCluster { name: string, mode: string, port?: number, impersonate?: boolean, token: string, caPem: string }

/** A running `tower server` on a state dir, and the CLI commands that go with it. */
export interface TowerServerHandle {
  stateDir: string
  /** Folder for files of this Tower (tokens, CA files, kubeconfigs). */
  dir: string
  /** Address the agent endpoint and the cluster ports listen on. */
  host: string
  agentPort: number
  server: TowerProcess
  /** `tower cluster add NAME --output json [--mode] [--impersonate]`; resolves once its listener is ready. */
  addCluster (name: string, opts?: { mode?: 'proxy' | 'passthrough', impersonate?: boolean }): Promise<AddedCluster & { port: number }>
  /** `tower kubeconfig NAME --out F [...]`; returns F. */
  kubeconfig (name: string, opts?: { user?: string, groups?: string[], from?: string, token?: boolean, file?: string }): Promise<string>
  /** Stop the server process and start it again on the same state dir and agent port. */
  restart (): Promise<void>
  stop (): Promise<void>
}

function serverArgs (stateDir: string, host: string, port: number): string[] {
  return ['server', '--state-dir', stateDir, '--listen', `${host}:${port}`, '--port-range', '0',
    '--advertise-host', host, '--san', host, '--cluster-host', host]
}

/** Start `tower server` on a fresh state dir under `dir`, listening on `host` (default 127.0.0.1), port 0. */
export async function startTowerServer (dir: string, opts: { host?: string, logDir?: string, timeoutMs?: number } = {}): Promise<TowerServerHandle> {
  const host = opts.host ?? '127.0.0.1'
  const stateDir = join(dir, 'state')
  const timeoutMs = opts.timeoutMs ?? 30_000
  let generation = 0
  let server = startTower('tower-server', serverArgs(stateDir, host, 0), { logDir: opts.logDir })
  const listening = await server.waitFor((l) => l.msg === 'agent endpoint listening', timeoutMs)
  const agentPort = Number(listening.port)
  const handle: TowerServerHandle = {
    stateDir,
    dir,
    host,
    agentPort,
    get server () { return server },
    async addCluster (name, o = {}) {
      const args = ['cluster', 'add', name, '--state-dir', stateDir, '--output', 'json']
      if (o.mode !== undefined) args.push('--mode', o.mode)
      if (o.impersonate === true) args.push('--impersonate')
      const added = JSON.parse(await towerOk(args)) as AddedCluster
      const ready = await server.waitFor((l) => l.msg === 'cluster listener ready' && l.cluster === name, timeoutMs)
      return { ...added, port: Number(ready.port) }
    },
    async kubeconfig (name, o = {}) {
      const file = o.file ?? join(dir, `${name}-${o.user ?? 'default'}${o.token === true ? '-token' : ''}.kubeconfig`)
      const args = ['kubeconfig', name, '--state-dir', stateDir, '--out', file]
      if (o.user !== undefined) args.push('--user', o.user)
      for (const g of o.groups ?? []) args.push('--group', g)
      if (o.from !== undefined) args.push('--from', o.from)
      if (o.token === true) args.push('--token')
      await towerOk(args)
      return file
    },
    async restart () {
      await server.stop()
      generation++
      server = startTower(`tower-server-${generation}`, serverArgs(stateDir, host, agentPort), { logDir: opts.logDir })
      await server.waitFor((l) => l.msg === 'agent endpoint listening', timeoutMs)
    },
    stop: () => server.stop()
  }
  return handle
}

/** Where a Tower agent sends the member's traffic, and with which credential. */
export interface AgentUpstream {
  /** https://host:port of the member kube-apiserver. */
  url: string
  /** CA of the member apiserver (PEM). */
  caPem: string
  /** File holding the bearer token (the ServiceAccount token); re-read by the agent when it changes. */
  tokenFile: string
}

/**
 * Start `tower agent` for `cluster` (optionally inside a network namespace, with `serverHost` the address
 * the namespace can reach); resolves once it logged "connected to server".
 */
export async function startTowerAgent (tower: TowerServerHandle, cluster: AddedCluster, upstream: AgentUpstream,
  opts: { netns?: string, serverHost?: string, logDir?: string, name?: string, timeoutMs?: number } = {}): Promise<TowerProcess> {
  const dir = join(tower.dir, `agent-${cluster.name}`)
  mkdirSync(dir, { recursive: true })
  const file = (n: string, content: string): string => {
    const p = join(dir, n)
    writeFileSync(p, content, { mode: 0o600 })
    return p
  }
  const args = ['agent',
    '--server', `wss://${opts.serverHost ?? tower.host}:${tower.agentPort}`,
    '--cluster', cluster.name,
    '--token-file', file('join-token', cluster.token + '\n'),
    '--ca-file', file('tower-ca.crt', cluster.caPem),
    '--upstream', upstream.url,
    '--upstream-ca-file', file('member-ca.crt', upstream.caPem),
    '--upstream-token-file', upstream.tokenFile,
    // Reconnect quickly after a server restart: the tests wait on it.
    '--reconnect-min-ms', '200', '--reconnect-max-ms', '2000']
  const agent = startTower(opts.name ?? `tower-agent-${cluster.name}`, args, { netns: opts.netns, logDir: opts.logDir })
  await agent.waitFor((l) => l.msg === 'connected to server', opts.timeoutMs ?? 30_000)
  return agent
}

/** `kubectl apply -f <repo>/<path>` on `server` as admin (for real); returns kubectl's stdout. */
export async function applyRepoManifest (server: ApiServer, path: string, extra: string[] = []): Promise<string> {
  return await server.kubectl(['apply', ...extra, '-f', join(REPO_ROOT, path)])
}

/**
 * A token for ServiceAccount `namespace/name` from the TokenRequest API (`kubectl create token`), valid
 * for an hour, written to `file` (mode 0600). Returns the token.
 */
export async function serviceAccountToken (server: ApiServer, namespace: string, name: string, file: string): Promise<string> {
  const token = (await server.kubectl(['create', 'token', name, '-n', namespace, '--duration=1h'])).trim()
  if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token)) throw new Error('kubectl create token printed no JWT')
  writeFileSync(file, token + '\n', { mode: 0o600 })
  return token
}

/** Send `payload` over TCP to 127.0.0.1:port, half-close, and read everything until the peer closes. */
export async function echoOverTcp (port: number, payload: Buffer, host = '127.0.0.1'): Promise<Buffer> {
  const sock = connect(port, host)
  await once(sock, 'connect')
  sock.end(payload)
  const chunks: Buffer[] = []
  for await (const c of sock) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

/**
 * Create `count` ConfigMaps named `<prefix>-<i>` in `namespace` on an apiserver reachable from this
 * process, with POSTs from `concurrency` parallel keep-alive connections using the admin cert. kubectl
 * would send them one at a time (and `apply` would GET each first): minutes instead of seconds here.
 */
export async function bulkCreateConfigMaps (server: ApiServer, namespace: string, count: number,
  opts: { prefix?: string, labels?: Record<string, string>, concurrency?: number } = {}): Promise<void> {
  const agent = new HttpsAgent({ keepAlive: true, maxSockets: opts.concurrency ?? 16, ca: server.caPem, cert: server.adminCertPem, key: server.adminKeyPem })
  const url = new URL(server.url)
  const post = async (i: number): Promise<void> => {
    const body = JSON.stringify({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: `${opts.prefix ?? 'cm'}-${i}`, namespace, labels: opts.labels ?? {} },
      data: { index: String(i) }
    })
    const req = request({
      agent,
      host: url.hostname,
      port: url.port,
      method: 'POST',
      path: `/api/v1/namespaces/${namespace}/configmaps`,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }
    })
    req.end(body)
    const [res] = await once(req, 'response') as [IncomingMessage]
    const chunks: Buffer[] = []
    for await (const c of res) chunks.push(c as Buffer)
    if (res.statusCode !== 201) throw new Error(`POST configmap ${i}: ${res.statusCode} ${Buffer.concat(chunks).toString()}`)
  }
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) await post(next++)
  }
  try {
    await Promise.all(Array.from({ length: opts.concurrency ?? 16 }, worker))
  } finally {
    agent.destroy()
  }
}

/** A kubeconfig's server URL and TLS options (CA, client cert or token, tls-server-name), via client-node. */
export async function kubeconfigTls (kubeconfig: string): Promise<{ url: URL, opts: RequestOptions }> {
  const kc = new KubeConfig()
  kc.loadFromFile(kubeconfig)
  const opts: RequestOptions = {}
  await kc.applyToHTTPSOptions(opts)
  return { url: new URL(kc.getCurrentCluster()!.server), opts }
}

/** One HTTPS GET (HTTP/1.1, no retries) with a kubeconfig's credentials; status 0 = the connection failed. */
export async function getOnce (kubeconfig: string, path: string, headers: Record<string, string> = {}):
Promise<{ status: number, headers: IncomingHttpHeaders, body: Buffer, error?: string }> {
  const { url, opts } = await kubeconfigTls(kubeconfig)
  return await new Promise((resolvePromise) => {
    const req = request(new URL(path, url), { ...opts, headers: { ...opts.headers, ...headers }, agent: false, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', (err) => resolvePromise({ status: 0, headers: {}, body: Buffer.alloc(0), error: err.message }))
    })
    req.on('timeout', () => req.destroy(new Error('timed out after 10 s')))
    req.on('error', (err) => resolvePromise({ status: 0, headers: {}, body: Buffer.alloc(0), error: err.message }))
    req.end()
  })
}

/** The ALPN protocol a TLS handshake with a kubeconfig's server settles on when h2 and http/1.1 are offered. */
export async function negotiatedAlpn (kubeconfig: string): Promise<string | false> {
  const { url, opts } = await kubeconfigTls(kubeconfig)
  const servername = opts.servername ?? url.hostname
  const sock = tlsConnect({
    host: url.hostname,
    port: Number(url.port),
    ca: opts.ca,
    cert: opts.cert,
    key: opts.key,
    // An IP as SNI is not allowed (RFC 6066; node warns); the certificate check still uses `host`.
    ...(isIP(servername) === 0 ? { servername } : {}),
    ALPNProtocols: ['h2', 'http/1.1']
  })
  try {
    await once(sock, 'secureConnect')
    return sock.alpnProtocol ?? false
  } finally {
    // A clean close (close_notify, FIN) first; but kube-apiserver does not always close an HTTP/2
    // connection that never sent a preface (seen directly too), so do not wait on it for long.
    sock.end()
    const timer = setTimeout(() => sock.destroy(), 2_000)
    if (!sock.closed) await once(sock, 'close')
    clearTimeout(timer)
  }
}

/** How many sockets bound to local port `port` are in CLOSE-WAIT (peer closed, we did not), per `ss`. */
export function closeWaitSockets (port: number): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    execFile('ss', ['-tanH', 'state', 'close-wait', `( sport = :${port} )`], (err, stdout) => {
      if (err !== null) reject(err)
      else resolvePromise(stdout.split('\n').filter((l) => l.trim() !== '').length)
    })
  })
}

/**
 * kubectl exec that retries once on a mismatch, saying so: kubectl + kube-apiserver + kwok now and then
 * drop the tail of an exec's output even without Tower (measured; see tunnel-kubectl.test.ts).
 */
export async function execChecked (kubeconfig: string, args: string[], opts: { input?: Buffer, env: Record<string, string> }, expected: string): Promise<string> {
  const first = await kubectl(kubeconfig, args, { ...opts, timeoutMs: 60_000 })
  if (first.code === 0 && first.stdout === expected) return first.stdout
  console.log(`# RETRY kubectl ${args.slice(0, 6).join(' ')}: code ${first.code}, ${first.stdout.length} of ${expected.length} bytes; stderr: ${first.stderr.slice(-300)}`)
  return await kubectlOk(kubeconfig, args, { ...opts, timeoutMs: 60_000 })
}

/**
 * `kubectl exec -i` that writes `input` to kubectl's stdin but leaves stdin open until kubectl exits (the
 * remote command must end by itself, e.g. `head -c N`). Closing stdin right after the data makes kubectl
 * send one more frame (stdin's close) that can reach the apiserver after the command ended; that upstream
 * race sometimes costs the output, with or without Tower (see tunnel-kubectl.test.ts).
 */
export async function execKeepingStdinOpen (kubeconfig: string, args: string[], input: Buffer,
  opts: { env?: Record<string, string>, timeoutMs?: number } = {}): Promise<{ code: number | null, stdout: Buffer, stderr: string }> {
  const proc = startKubectl('kubectl-exec-i', kubeconfig, args, { env: opts.env, stdin: true })
  const chunks: Buffer[] = []
  proc.child.stdout!.on('data', (c: Buffer) => chunks.push(c))
  proc.child.stdin!.on('error', () => { /* kubectl may exit before it read everything */ })
  proc.child.stdin!.write(input)
  const timer = setTimeout(() => { void proc.stop(0) }, opts.timeoutMs ?? 60_000).unref()
  const st = await proc.exited
  clearTimeout(timer)
  proc.child.stdin!.destroy()
  await proc.stop()
  return { code: st.code, stdout: Buffer.concat(chunks), stderr: proc.tail(400) }
}

/**
 * {@link execKeepingStdinOpen} that must print `expected`: a wrong result is retried once and reported on
 * stdout ("# RETRY"), like {@link execChecked}. Returns the last stdout (utf8); throws when kubectl failed.
 */
export async function execInputChecked (kubeconfig: string, args: string[], input: Buffer,
  opts: { env?: Record<string, string> }, expected: string): Promise<string> {
  let r = await execKeepingStdinOpen(kubeconfig, args, input, opts)
  if (r.code !== 0 || r.stdout.toString() !== expected) {
    console.log(`# RETRY kubectl ${args.slice(0, 6).join(' ')}: code ${r.code}, ${r.stdout.length} of ${expected.length} bytes; stderr: ${r.stderr.slice(-300)}`)
    r = await execKeepingStdinOpen(kubeconfig, args, input, opts)
  }
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (code ${r.code}):\n${r.stderr}`)
  return r.stdout.toString()
}
