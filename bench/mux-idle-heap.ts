/**
 * Heap per idle mux stream: N streams opened over an in-memory session pair
 * (both ends in this process), each accepted and sent one small event, then
 * left idle. Prints (heapUsed + arrayBuffers after two forced GCs, minus the
 * same before) ÷ N, so the figure is one client stream plus one server stream.
 *
 *   node --expose-gc bench/mux-idle-heap.ts [N=10000]
 */
import type { Duplex } from 'node:stream'
import { setTimeout as delay } from 'node:timers/promises'
import { Session } from '@tower/mux'
import { memoryPair } from '../packages/mux/test/helpers.ts'

const n = Number(process.argv[2] ?? 10_000)
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with node --expose-gc')
const heap = (): number => {
  gc()
  gc()
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

const [a, b] = memoryPair()
const client = new Session(a, { keepAliveInterval: 0, client: true, maxStreams: n + 200 })
const server = new Session(b, { keepAliveInterval: 0, client: false, maxStreams: n + 200 })
const held: Duplex[] = []
server.on('stream', (s: Duplex) => {
  s.on('error', () => {})
  held.push(s)
  s.write('{"type":"ADDED"}\n')
})

// Warm-up: code, maps and the sessions' own buffers, which N idle streams do not add.
for (let i = 0; i < 100; i++) {
  const s = client.open()
  s.on('error', () => {})
  s.once('data', () => { s.destroy() })
}
await delay(200)
for (const s of held.splice(0)) s.destroy()
await delay(200)

const before = heap()
let got = 0
let opened = (): void => {}
const all = new Promise<void>((resolve) => { opened = resolve })
for (let i = 0; i < n; i++) {
  const s = client.open()
  s.on('error', () => {})
  held.push(s)
  s.once('data', () => { if (++got === n) opened() })
}
await all
await delay(100)
const after = heap()
process.stdout.write(JSON.stringify({ streams: n, clientTable: client.numStreams, serverTable: server.numStreams, bytesPerStreamPair: Math.round((after - before) / n) }) + '\n')
process.exit(0)
