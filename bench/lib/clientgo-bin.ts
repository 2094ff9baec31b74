/**
 * The client-go program (test/e2e/tools/clientgo, a Go module) for the
 * clientgo section, built by test/e2e/tools/clientgo.sh into the e2e cache
 * (it skips the build when the cached binary matches the module's sources,
 * so an unchanged module costs a moment). Never built into the repository.
 */
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO } from '../tower.ts'

const run = promisify(execFile)

/** The module's directory and its build script in the repository. */
export const CLIENTGO_MODULE = join(REPO, 'test', 'e2e', 'tools', 'clientgo')
const BUILD = join(REPO, 'test', 'e2e', 'tools', 'clientgo.sh')

/** Path of the built binary, running clientgo.sh first (a no-op when the cache is current). */
export async function clientgoBinary (log: (msg: string) => void): Promise<string> {
  const gomod = join(CLIENTGO_MODULE, 'go.mod')
  if (!existsSync(gomod) || !existsSync(BUILD)) throw new Error(`${CLIENTGO_MODULE} or ${BUILD} missing: the client-go module is not in this checkout`)
  const version = /^\s*(?:require\s+)?k8s\.io\/client-go\s+(v\S+)/m.exec(readFileSync(gomod, 'utf8'))?.[1]
  if (version === undefined) throw new Error(`${gomod}: no k8s.io/client-go requirement`)
  const t0 = Date.now()
  const { stdout } = await run('bash', [BUILD], {
    env: { ...process.env, PATH: ['/usr/local/go/bin', process.env.PATH ?? ''].join(':') },
    timeout: 30 * 60_000,
    maxBuffer: 16 * 1024 * 1024
  })
  const bin = join(process.env.TOWER_E2E_CACHE ?? join(homedir(), '.cache', 'tower-e2e'), `clientgo-${version}`, 'clientgo')
  if (!existsSync(bin)) throw new Error(`clientgo.sh ran but ${bin} is missing: ${stdout.trim().split('\n').slice(-2).join(' | ')}`)
  log(`clientgo: ${bin} (${((Date.now() - t0) / 1000).toFixed(1)} s: ${stdout.trim().split('\n').at(-1) ?? ''})`)
  return bin
}
