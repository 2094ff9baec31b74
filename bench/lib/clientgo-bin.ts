/**
 * The client-go program (test/e2e/tools/clientgo, a Go module) for the
 * clientgo section: built with the local Go into the bench cache, keyed by a
 * hash of the module's go.mod, go.sum and *.go files, so an edit rebuilds and
 * an unchanged module costs nothing. Never built into the repository.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO } from '../tower.ts'
import { benchCache } from './tunnel.ts'

const run = promisify(execFile)

/** The module's directory in the repository. */
export const CLIENTGO_MODULE = join(REPO, 'test', 'e2e', 'tools', 'clientgo')

/** Path of the built binary, building it first when the cache has none for this source. */
export async function clientgoBinary (log: (msg: string) => void): Promise<string> {
  if (!existsSync(join(CLIENTGO_MODULE, 'go.mod'))) throw new Error(`${CLIENTGO_MODULE}/go.mod missing: the client-go module is not in this checkout`)
  const files = readdirSync(CLIENTGO_MODULE).filter((f) => f === 'go.mod' || f === 'go.sum' || f.endsWith('.go')).sort()
  const h = createHash('sha256')
  for (const f of files) h.update(f).update('\0').update(readFileSync(join(CLIENTGO_MODULE, f))).update('\0')
  const dir = join(benchCache(), `clientgo-${h.digest('hex').slice(0, 16)}`)
  const bin = join(dir, 'clientgo')
  if (existsSync(bin)) return bin
  mkdirSync(dir, { recursive: true })
  log(`clientgo: building ${CLIENTGO_MODULE} → ${bin}`)
  const t0 = Date.now()
  const goPath = ['/usr/local/go/bin', process.env.PATH ?? ''].join(':')
  await run('go', ['build', '-p', '1', '-trimpath', '-ldflags', '-s -w', '-o', `${bin}.tmp`, '.'], {
    cwd: CLIENTGO_MODULE,
    env: { ...process.env, PATH: goPath, GOTOOLCHAIN: 'local', CGO_ENABLED: '0', GOFLAGS: '-mod=readonly' },
    timeout: 30 * 60_000,
    maxBuffer: 16 * 1024 * 1024
  })
  renameSync(`${bin}.tmp`, bin)
  log(`clientgo: built in ${((Date.now() - t0) / 1000).toFixed(0)} s`)
  return bin
}
