/**
 * Makes sure the peers' binaries exist before a run uses them: when chisel or
 * Konnectivity is missing from the cache, runs bench/peers/build.sh (cached,
 * so this costs nothing once built) instead of leaving the peer out.
 */
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawnLogged } from '../lib/proc.ts'
import { benchCache } from '../lib/tunnel.ts'
import { CHISEL_VERSION } from './chisel.ts'
import { KONNECTIVITY_VERSION } from './konnectivity.ts'

const BUILD = fileURLToPath(new URL('./build.sh', import.meta.url))
/** A cold build of both peers takes minutes on 2 cores; give it this long, in milliseconds. */
const BUILD_TIMEOUT_MS = 45 * 60_000

/** The binaries the peers need, absent ones first. */
export function missingPeerBinaries (): string[] {
  return [
    join(benchCache(), `chisel-${CHISEL_VERSION}`, 'chisel'),
    join(benchCache(), `konnectivity-${KONNECTIVITY_VERSION}`, 'proxy-server'),
    join(benchCache(), `konnectivity-${KONNECTIVITY_VERSION}`, 'proxy-agent')
  ].filter((p) => !existsSync(p))
}

/**
 * Runs build.sh when a binary is missing; resolves with what is still
 * missing afterwards (empty when every peer is there). The build's output
 * goes to `logFile`.
 */
export async function ensurePeers (logFile: string, log: (msg: string) => void): Promise<string[]> {
  const missing = missingPeerBinaries()
  if (missing.length === 0) return []
  log(`peers: ${missing.join(', ')} missing; building with bench/peers/build.sh (log ${logFile})`)
  const t0 = Date.now()
  const child = spawnLogged('bash', [BUILD], logFile, { env: { ...process.env, CHISEL_VERSION } })
  const timer = setTimeout(() => child.kill('SIGTERM'), BUILD_TIMEOUT_MS)
  const [code] = await once(child, 'exit') as [number | null]
  clearTimeout(timer)
  const still = missingPeerBinaries()
  log(`peers: build.sh exited ${code} after ${((Date.now() - t0) / 1000).toFixed(0)} s; ${still.length === 0 ? 'all built' : `still missing ${still.join(', ')}`}`)
  return still
}
