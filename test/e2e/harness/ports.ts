/**
 * Port choice for servers that cannot listen on port 0.
 *
 * etcd and kube-apiserver take their ports on the command line and do not report a port they chose
 * themselves, so "listen on 0 and read it back" is impossible for them. This is the one place the
 * harness probes: bind port 0 on the address, read the kernel's pick, close, pass it on. Another process
 * could take it in between; callers therefore retry a start that failed with "address already in use"
 * ({@link isAddressInUse}, {@link withPortRetry}).
 */
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)

/** A port that was free on `host` a moment ago (see the module comment for why this probe exists). */
export async function probeFreePort (host = '127.0.0.1', netns?: string): Promise<number> {
  if (netns !== undefined) {
    // Another namespace has its own port space: ask the kernel inside it.
    const script = `const s=require('net').createServer().listen(0,${JSON.stringify(host)},()=>{process.stdout.write(String(s.address().port));s.close()})`
    const { stdout } = await execFileAsync('ip', ['netns', 'exec', netns, process.execPath, '-e', script])
    const port = Number(stdout.trim())
    if (!Number.isInteger(port) || port <= 0) throw new Error(`probe in netns ${netns} printed ${JSON.stringify(stdout)}`)
    return port
  }
  const srv = createServer()
  srv.listen(0, host)
  await once(srv, 'listening')
  const addr = srv.address()
  srv.close()
  await once(srv, 'close')
  if (addr === null || typeof addr === 'string') throw new Error('unexpected address from listen(0)')
  return addr.port
}

/** Several distinct probed ports (distinct among themselves). */
export async function probeFreePorts (count: number, host = '127.0.0.1', netns?: string): Promise<number[]> {
  const ports = new Set<number>()
  while (ports.size < count) ports.add(await probeFreePort(host, netns))
  return [...ports]
}

/** True when a start failed because a probed port was taken in the meantime. */
export function isAddressInUse (err: unknown): boolean {
  return err instanceof Error && /address already in use|EADDRINUSE/i.test(err.message)
}

/** Run `start` up to `attempts` times while it fails with "address already in use". */
export async function withPortRetry<T> (what: string, start: () => Promise<T>, attempts = 3,
  log?: (line: string) => void): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await start()
    } catch (err) {
      if (i >= attempts || !isAddressInUse(err)) throw err
      log?.(`${what}: a probed port was taken meanwhile, retrying (${i}/${attempts})`)
    }
  }
}
