/**
 * The baseline: a plain Node TCP relay (net.createServer → net.connect, pipe
 * both ways with half-close). Put in front of the HTTPS upstream, TLS runs
 * end to end through it, exactly as through Tower's passthrough mode — so
 * passthrough ÷ relay isolates what the tunnel adds over one Node hop.
 *
 * Run as a child (`node bench/relay.ts --target 127.0.0.1:PORT`) it listens
 * on 127.0.0.1 port 0 and sends `{ type: 'ready', port, pid }` over IPC.
 */
import net from 'node:net'
import { parseArgs } from 'node:util'

/** A running relay. */
export interface Relay {
  /** Listening port on 127.0.0.1. */
  port: number
  /** Stops listening and destroys every relayed connection. */
  close (): Promise<void>
}

/** Starts a relay to `target` on 127.0.0.1 port 0. */
export async function startRelay (target: { host: string, port: number }): Promise<Relay> {
  const conns = new Set<net.Socket>()
  const srv = net.createServer({ allowHalfOpen: true, noDelay: true }, (down) => {
    const up = net.connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true })
    conns.add(down)
    conns.add(up)
    const kill = (): void => { down.destroy(); up.destroy(); conns.delete(down); conns.delete(up) }
    down.once('error', kill)
    up.once('error', kill)
    down.once('close', () => { if (!up.writableEnded) up.destroy(); conns.delete(down) })
    up.once('close', () => { if (!down.writableEnded) down.destroy(); conns.delete(up) })
    down.pipe(up)
    up.pipe(down)
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  return {
    port: (srv.address() as net.AddressInfo).port,
    async close () {
      for (const c of conns) c.destroy()
      await new Promise<void>((resolve) => srv.close(() => resolve()))
    }
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { target: { type: 'string' } } })
  const m = /^(.+):(\d+)$/.exec(values.target ?? '')
  if (m === null) throw new Error('usage: relay.ts --target HOST:PORT')
  const relay = await startRelay({ host: m[1], port: Number(m[2]) })
  process.send?.({ type: 'ready', port: relay.port, pid: process.pid })
  process.once('SIGTERM', () => { void relay.close().then(() => process.exit(0)) })
  process.once('disconnect', () => { void relay.close().then(() => process.exit(0)) })
}
