/**
 * kubectl as the harness's client, plus kubeconfig files.
 *
 * The harness drives the clusters with the real kubectl (/usr/bin/kubectl, v1.32) rather than its own
 * HTTP client: it is the client the tunnel must satisfy, and it runs unchanged inside a network
 * namespace (`ip netns exec`), where a member apiserver bound to that namespace's loopback is the only
 * way to reach it.
 */
import { writeFileSync } from 'node:fs'
import { startProcess, type ManagedProcess } from './processes.ts'

/** The kubectl binary: $TOWER_E2E_KUBECTL or /usr/bin/kubectl. */
export const KUBECTL = process.env.TOWER_E2E_KUBECTL ?? '/usr/bin/kubectl'

/** Environment that makes kubectl 1.29+ use SPDY instead of WebSocket for exec/attach/cp and port-forward. */
export const SPDY_ENV: Readonly<Record<string, string>> = Object.freeze({
  KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false',
  KUBECTL_PORT_FORWARD_WEBSOCKETS: 'false'
})

/** Write a kubeconfig with one cluster/user/context and return its path. Client cert + key, or a bearer token. */
export function writeKubeconfig (path: string, opts: {
  server: string
  caPem: string
  /** Cluster, user and context name. */
  name: string
  certPem?: string
  keyPem?: string
  token?: string
  /** Namespace of the context. */
  namespace?: string
}): string {
  const user: Record<string, string> = {}
  if (opts.certPem !== undefined && opts.keyPem !== undefined) {
    user['client-certificate-data'] = Buffer.from(opts.certPem).toString('base64')
    user['client-key-data'] = Buffer.from(opts.keyPem).toString('base64')
  }
  if (opts.token !== undefined) user.token = opts.token
  // JSON is YAML: every Kubernetes client reads it, and it needs no YAML library.
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: opts.name, cluster: { server: opts.server, 'certificate-authority-data': Buffer.from(opts.caPem).toString('base64') } }],
    users: [{ name: opts.name, user }],
    contexts: [{ name: opts.name, context: { cluster: opts.name, user: opts.name, ...(opts.namespace ? { namespace: opts.namespace } : {}) } }],
    'current-context': opts.name
  }
  writeFileSync(path, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 })
  return path
}

/** Result of a finished kubectl. */
export interface KubectlResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  /** True when the harness killed it after `timeoutMs`. */
  timedOut: boolean
}

/** Options of {@link kubectl} and {@link startKubectl}. */
export interface KubectlOptions {
  /** Run inside this network namespace. */
  netns?: string
  /** Extra environment, e.g. {@link SPDY_ENV}. */
  env?: Record<string, string>
  /** Written to stdin, then stdin is closed (kubectl() only). */
  input?: string | Buffer
  /** Kill kubectl after this many ms (default 60 s). */
  timeoutMs?: number
  log?: (line: string) => void
}

/** Run `kubectl --kubeconfig=K args...` to completion. Never throws for a non-zero exit: look at `code`. */
export async function kubectl (kubeconfig: string, args: string[], opts: KubectlOptions = {}): Promise<KubectlResult> {
  const proc = startKubectl('kubectl', kubeconfig, args, { ...opts, stdin: opts.input !== undefined })
  const chunks: Buffer[] = []
  proc.child.stdout!.on('data', (c: Buffer) => chunks.push(c))
  if (opts.input !== undefined) proc.child.stdin!.end(opts.input)
  const timeoutMs = opts.timeoutMs ?? 60_000
  let timedOut = false
  const timer = setTimeout(() => { timedOut = true; void proc.stop(0) }, timeoutMs).unref()
  const st = await proc.exited
  clearTimeout(timer)
  await proc.stop()
  return { ...st, timedOut, stdout: Buffer.concat(chunks).toString('utf8'), stderr: proc.tail(400) }
}

/** Like {@link kubectl}, but throws (with stderr) on a non-zero exit; returns stdout. */
export async function kubectlOk (kubeconfig: string, args: string[], opts: KubectlOptions = {}): Promise<string> {
  const r = await kubectl(kubeconfig, args, opts)
  if (r.code !== 0) {
    const why = r.timedOut ? `timed out after ${opts.timeoutMs ?? 60_000} ms` : `code ${r.code}, signal ${r.signal}`
    throw new Error(`kubectl ${args.join(' ')} failed (${why}):\n${r.stderr}`)
  }
  return r.stdout
}

/**
 * Start a long-running kubectl (logs -f, port-forward, exec -i, attach) and hand it over: stdout is raw
 * (child.stdout), stderr is line-captured (waitForLine works on it), stdin is a pipe when `stdin` is set.
 * Stop it with `proc.stop()`; it is also killed at exit.
 */
export function startKubectl (name: string, kubeconfig: string, args: string[],
  opts: Omit<KubectlOptions, 'input' | 'timeoutMs'> & { stdin?: boolean, logDir?: string } = {}): ManagedProcess {
  return startProcess(name, KUBECTL, [`--kubeconfig=${kubeconfig}`, ...args], {
    netns: opts.netns,
    env: opts.env,
    stdin: opts.stdin,
    rawStdout: true,
    logDir: opts.logDir,
    log: opts.log
  })
}

/**
 * `kubectl port-forward pod/NAME :remotePort` on 127.0.0.1 and the local port kubectl picked (it listens on
 * port 0 and prints "Forwarding from 127.0.0.1:PORT -> REMOTE"; we read that line instead of guessing).
 */
export async function portForward (kubeconfig: string, pod: string, remotePort: number,
  opts: Omit<KubectlOptions, 'input'> & { namespace?: string } = {}): Promise<{ localPort: number, proc: ManagedProcess }> {
  const args = ['port-forward', '--address=127.0.0.1', `pod/${pod}`, `:${remotePort}`]
  if (opts.namespace !== undefined) args.unshift(`--namespace=${opts.namespace}`)
  const proc = startKubectl('kubectl-port-forward', kubeconfig, args, opts)
  const timeoutMs = opts.timeoutMs ?? 30_000
  try {
    const localPort = await new Promise<number>((resolve, reject) => {
      let buf = ''
      const timer = setTimeout(() => reject(new Error(`port-forward printed no local port within ${timeoutMs} ms:\n${proc.tail()}`)), timeoutMs).unref()
      proc.child.stdout!.setEncoding('utf8')
      proc.child.stdout!.on('data', (chunk: string) => {
        buf += chunk
        const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(buf)
        if (m) { clearTimeout(timer); resolve(Number(m[1])) }
      })
      void proc.exited.then((st) => {
        clearTimeout(timer)
        reject(new Error(`kubectl port-forward exited (code ${st.code}):\n${proc.tail()}`))
      })
    })
    return { localPort, proc }
  } catch (err) {
    await proc.stop()
    throw err
  }
}

/** The stdout of a started kubectl, accumulated, with a way to wait for what it prints. */
export interface CapturedOutput {
  /** Everything read so far (utf8). */
  text (): string
  /** Resolves with text() once it matches `re`; rejects after `timeoutMs` (ms) or when the stream ends first. */
  waitFor (re: RegExp, timeoutMs: number): Promise<string>
}

/** Start accumulating `proc`'s stdout (see {@link startKubectl}: it is left raw). */
export function captureStdout (proc: ManagedProcess): CapturedOutput {
  let buf = ''
  let ended = false
  const waiters = new Set<() => void>()
  const stdout = proc.child.stdout!
  stdout.setEncoding('utf8')
  stdout.on('data', (chunk: string) => { buf += chunk; for (const w of waiters) w() })
  stdout.on('close', () => { ended = true; for (const w of waiters) w() })
  return {
    text: () => buf,
    waitFor: (re, timeoutMs) => new Promise<string>((resolve, reject) => {
      const check = (): void => {
        if (re.test(buf)) { finish(); resolve(buf); return }
        if (ended) { finish(); reject(new Error(`${proc.name}: output ended without matching ${re}; got ${JSON.stringify(buf)}\n${proc.tail()}`)) }
      }
      const finish = (): void => { clearTimeout(timer); waiters.delete(check) }
      const timer = setTimeout(() => {
        finish()
        reject(new Error(`${proc.name}: no output matching ${re} within ${timeoutMs} ms; got ${JSON.stringify(buf)}\n${proc.tail()}`))
      }, timeoutMs).unref()
      waiters.add(check)
      check()
    })
  }
}
