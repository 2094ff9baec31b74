/**
 * The measurement behind "the load client runs in its own process"
 * (bench/README.md): the same direct-HTTPS jobs with the client sharing the
 * upstream's event loop, and with the client in a child process.
 *
 *   node bench/placement.ts [--seconds N] [--mib N]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { writeBenchPki } from './lib/pki.ts'
import { LoadClient } from './lib/client.ts'
import { startUpstream } from './upstream.ts'
import { runJob, type Job } from './load.ts'
import type { Target } from './lib/target.ts'

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, mib: { type: 'string', default: '256' } } })
const dir = mkdtempSync(join(os.tmpdir(), 'tower-bench-placement-'))
const pki = writeBenchPki(dir)
const up = await startUpstream({ cert: readFileSync(pki.certFile), key: readFileSync(pki.keyFile) })
const target: Target = { name: 'direct', protocol: 'https', host: '127.0.0.1', port: up.https, ca: pki.caPem }
const bytes = Number(values.mib) * 1024 * 1024
const jobs: Array<[string, Job]> = [
  ['download MB/s', { kind: 'bulk', target, direction: 'down', bytes, timeoutMs: 120_000 }],
  ['upload MB/s', { kind: 'bulk', target, direction: 'up', bytes, timeoutMs: 120_000 }],
  ['keep-alive rps', { kind: 'rps', target, concurrency: 64, durationMs: Number(values.seconds) * 1000, warmupMs: 1000, newConnection: false }]
]
const client = await LoadClient.start(join(dir, 'load.log'))
for (const [label, job] of jobs) {
  const pick = (r: any): string => job.kind === 'rps' ? `${r.rps.toFixed(0)} rps, p99 ${r.p99.toFixed(2)} ms` : `${r.mbps.toFixed(1)}`
  const same = await runJob(job)
  const child = await client.run(job, 180_000)
  console.log(`${label.padEnd(16)} same process: ${pick(same).padEnd(26)} child process: ${pick(child)}`)
}
await client.stop()
await up.close()
rmSync(dir, { recursive: true, force: true })
