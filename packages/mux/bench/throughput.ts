/**
 * Moves 256 MiB over one mux stream across TCP loopback and prints MB/s.
 * Not a test: run `node packages/mux/bench/throughput.ts [MiB] [chunkKiB] [rounds]`.
 *
 * Each round measures raw TCP (the ceiling of the machine) and then the mux
 * over TCP, on fresh connections; the medians and their ratio are printed
 * last. Sender and receiver share one process, as the two ends of a tunnel
 * share a machine in no real deployment: read it as a lower bound.
 */
import { once } from 'node:events'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import { Session } from '../src/index.ts'

const MIB = 1024 * 1024
const total = Number(process.argv[2] ?? 256) * MIB
const chunkSize = Number(process.argv[3] ?? 64) * 1024
const rounds = Number(process.argv[4] ?? 5)
const options = { keepAliveInterval: 0 }

async function tcpPair (): Promise<{ a: net.Socket, b: net.Socket, close: () => void }> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as net.AddressInfo
  const a = net.connect(port, '127.0.0.1')
  const [[b]] = await Promise.all([once(server, 'connection'), once(a, 'connect')])
  return { a, b: b as net.Socket, close: () => { a.destroy(); (b as net.Socket).destroy(); server.close() } }
}

// Writes `total` bytes into `w` honouring backpressure, then ends it.
function pump (w: Duplex): void {
  const buf = Buffer.alloc(chunkSize, 0x61)
  let sent = 0
  const go = (): void => {
    while (sent < total) {
      sent += buf.length
      if (!w.write(buf)) {
        w.once('drain', go)
        return
      }
    }
    w.end()
  }
  go()
}

async function count (r: Duplex): Promise<number> {
  let n = 0
  r.on('data', (d: Buffer) => { n += d.length })
  await once(r, 'end')
  return n
}

function report (name: string, bytes: number, ms: number): number {
  const rate = bytes / 1e6 / (ms / 1000)
  process.stdout.write(`${name}: ${(bytes / MIB).toFixed(0)} MiB in ${ms.toFixed(0)} ms = ${rate.toFixed(0)} MB/s\n`)
  return rate
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

async function rawTcp (): Promise<number> {
  const { a, b, close } = await tcpPair()
  const t0 = performance.now()
  const counted = count(b)
  pump(a)
  const n = await counted
  const rate = report('raw tcp', n, performance.now() - t0)
  close()
  return rate
}

async function muxTcp (): Promise<number> {
  const { a, b, close } = await tcpPair()
  const client = new Session(a, { client: true, ...options })
  const server = new Session(b, { client: false, ...options })
  const accepted = once(server, 'stream') as Promise<[Duplex]>
  const stream = client.open()
  const t0 = performance.now()
  pump(stream)
  const [inbound] = await accepted
  const n = await count(inbound)
  const rate = report('mux over tcp, one stream', n, performance.now() - t0)
  inbound.end()
  stream.resume()
  await once(stream, 'end')
  client.destroy()
  server.destroy()
  close()
  return rate
}

const raw: number[] = []
const mux: number[] = []
for (let i = 0; i < rounds; i++) {
  raw.push(await rawTcp())
  mux.push(await muxTcp())
}
const r = median(raw)
const m = median(mux)
process.stdout.write(`median of ${rounds}: raw tcp ${r.toFixed(0)} MB/s, mux ${m.toFixed(0)} MB/s, mux/raw ${(m / r).toFixed(2)}\n`)
