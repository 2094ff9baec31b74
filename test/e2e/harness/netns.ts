/**
 * A network namespace that makes the member cluster unreachable for real.
 *
 * createNetns() makes a namespace joined to the host by one veth pair with a /30 link network in
 * 10.213.0.0/16 (addresses of a namespace the test creates itself: the only non-loopback traffic the
 * workplace allows). Inside there is loopback and the link route only, no default route: from inside,
 * the one reachable address outside is `hostAddress`, where the Tower server listens. The member
 * apiserver binds to the namespace's own 127.0.0.1, which the host cannot reach at all.
 *
 * Needs root (CAP_NET_ADMIN) and iproute2. netnsSupport() says why not when it cannot work, so tests can
 * skip with that reason. The namespace is deleted by delete(), at exit/SIGINT, and namespaces left by a
 * test process that died (SIGKILL) are swept by the next createNetns().
 */
import { execFile, execFileSync } from 'node:child_process'
import { randomInt } from 'node:crypto'
import { connect } from 'node:net'
import { promisify } from 'node:util'
import { registerCleanup, startProcess, type ManagedProcess, type StartOptions } from './processes.ts'

const execFileAsync = promisify(execFile)

/** Prefix of every namespace name the harness creates: `tower-e2e-<pid>-<n>`. */
export const NETNS_PREFIX = 'tower-e2e-'

/** A network namespace with a veth link to the host. */
export interface Netns {
  /** Namespace name (for `ip netns exec`, and the `netns` option of startControlPlane). */
  name: string
  /** Host side of the veth pair; the only address the namespace can reach. Bind the Tower server here. */
  hostAddress: string
  /** Namespace side of the veth pair. */
  nsAddress: string
  /** Prefix length of the link network (30). */
  prefixLength: number
  hostInterface: string
  nsInterface: string
  /** Run a short command inside the namespace to completion; returns stdout, throws on failure. */
  run (cmd: string, args: string[]): Promise<string>
  /** Start a long-running process inside the namespace (see processes.ts startProcess). */
  spawn (name: string, cmd: string, args: string[], opts?: Omit<StartOptions, 'netns'>): ManagedProcess
  /** Kill everything left inside, delete the namespace (and with it the veth pair). Idempotent. */
  delete (): Promise<void>
}

/** Whether namespaces can be made here, and if not, why (for `t.skip(reason)`). */
export function netnsSupport (): { supported: true } | { supported: false, reason: string } {
  if (process.getuid?.() !== 0) return { supported: false, reason: 'network namespaces need root (CAP_NET_ADMIN); running as uid ' + process.getuid?.() }
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' })
  } catch (err) {
    return { supported: false, reason: `iproute2 \`ip netns\` unavailable: ${(err as Error).message}` }
  }
  return { supported: true }
}

function ipSync (args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: 'ignore' })
  } catch { /* already gone */ }
}

function pidAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Kill what runs in `name` and delete it, synchronously (usable from an exit handler). */
function destroySync (name: string, hostInterface?: string): void {
  let pids: string[] = []
  try {
    pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8' }).split('\n').filter((p) => p !== '')
  } catch { /* no such namespace */ }
  for (const pid of pids) {
    try { process.kill(Number(pid), 'SIGKILL') } catch { /* gone */ }
  }
  ipSync(['netns', 'del', name])
  // Deleting the namespace destroys its veth end and so the pair; this covers a half-made one.
  if (hostInterface !== undefined) ipSync(['link', 'del', hostInterface])
}

/** Delete namespaces named by {@link NETNS_PREFIX} whose creating process is gone (it was SIGKILLed). */
function sweepStale (log?: (line: string) => void): void {
  let names: string[]
  try {
    names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0] ?? '')
  } catch {
    return
  }
  for (const name of names) {
    const m = new RegExp(`^${NETNS_PREFIX}(\\d+)-\\d+$`).exec(name)
    if (m && !pidAlive(Number(m[1]))) {
      log?.(`netns: removing stale ${name} (its test process ${m[1]} is gone)`)
      destroySync(name)
    }
  }
}

let counter = 0

/** Pick a /30 in 10.213.0.0/16 that no interface on the host uses yet. */
async function pickSubnet (): Promise<{ hostAddress: string, nsAddress: string }> {
  const { stdout } = await execFileAsync('ip', ['-o', '-4', 'addr', 'show'])
  for (let i = 0; i < 100; i++) {
    const idx = randomInt(16384)
    const base = `10.213.${idx >> 6}.`
    const first = (idx & 63) << 2
    const used = [0, 1, 2, 3].some((k) => stdout.includes(` ${base}${first + k}/`))
    if (!used) return { hostAddress: base + String(first + 1), nsAddress: base + String(first + 2) }
  }
  throw new Error('no free /30 in 10.213.0.0/16')
}

/** Create a namespace with a veth link to the host (see the module comment). */
export async function createNetns (opts: { log?: (line: string) => void } = {}): Promise<Netns> {
  const support = netnsSupport()
  if (!support.supported) throw new Error(support.reason)
  sweepStale(opts.log)
  const name = `${NETNS_PREFIX}${process.pid}-${counter++}`
  const tag = randomInt(0x100000).toString(16).padStart(5, '0')
  const hostInterface = `tw${tag}h`
  const nsInterface = `tw${tag}n`
  const { hostAddress, nsAddress } = await pickSubnet()
  const prefixLength = 30
  let deleted: Promise<void> | undefined
  const unregister = registerCleanup(() => destroySync(name, hostInterface))
  const ip = async (...args: string[]): Promise<string> => (await execFileAsync('ip', args)).stdout
  try {
    await ip('netns', 'add', name)
    await ip('link', 'add', hostInterface, 'type', 'veth', 'peer', 'name', nsInterface)
    await ip('link', 'set', nsInterface, 'netns', name)
    await ip('addr', 'add', `${hostAddress}/${prefixLength}`, 'dev', hostInterface)
    await ip('link', 'set', hostInterface, 'up')
    await ip('-n', name, 'link', 'set', 'lo', 'up')
    await ip('-n', name, 'addr', 'add', `${nsAddress}/${prefixLength}`, 'dev', nsInterface)
    await ip('-n', name, 'link', 'set', nsInterface, 'up')
  } catch (err) {
    destroySync(name, hostInterface)
    unregister()
    throw err
  }
  opts.log?.(`netns ${name}: ${nsInterface} ${nsAddress}/${prefixLength} <-> host ${hostInterface} ${hostAddress}`)
  return {
    name,
    hostAddress,
    nsAddress,
    prefixLength,
    hostInterface,
    nsInterface,
    run: async (cmd, args) => (await execFileAsync('ip', ['netns', 'exec', name, cmd, ...args], { timeout: 60_000 })).stdout,
    spawn: (procName, cmd, args, spawnOpts = {}) => startProcess(procName, cmd, args, { ...spawnOpts, netns: name }),
    delete: () => {
      deleted ??= (async () => {
        destroySync(name, hostInterface)
        unregister()
        opts.log?.(`netns ${name}: deleted`)
      })()
      return deleted
    }
  }
}

/** Names of the harness's namespaces that exist now (to assert that none is left). */
export function listHarnessNetns (): string[] {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n')
      .map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(NETNS_PREFIX))
  } catch {
    return []
  }
}

/**
 * Whether a TCP connection to host:port succeeds within `timeoutMs` (ms). False on refusal, unreachable
 * network or timeout; the connection is closed at once when it succeeds.
 */
export async function canConnect (host: string, port: number, timeoutMs: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const sock = connect({ host, port })
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      sock.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => done(false), timeoutMs).unref()
    sock.once('connect', () => done(true))
    sock.once('error', () => done(false))
  })
}
