/**
 * The `secure-relay` baseline: passthrough's ceiling. Two plain Node TCP
 * relays in two processes, joined by a TLS link, carrying the caller's own
 * end-to-end TLS — the same crypto layers and processes as Tower's
 * passthrough mode (caller TLS inside a TLS link between server and agent),
 * without the mux or WebSocket. Each relayed connection gets its own TLS
 * link connection (no mux to share one), so a "new connection" here pays a
 * second handshake on the link; long-lived connections pay it once.
 *
 *   node bench/secure-relay.ts --role exit --target 127.0.0.1:UP --cert F --key F
 *       TLS server on 127.0.0.1:0; each TLS connection is piped to the upstream
 *   node bench/secure-relay.ts --role entry --link 127.0.0.1:EXIT --ca F
 *       TCP server on 127.0.0.1:0; each connection is piped into a new TLS connection to the exit
 *
 * Each sends `{ type: 'ready', port, pid }` over IPC.
 */
import net from 'node:net'
import tls from 'node:tls'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

/** Joins two sockets both ways with half-close; either error or an abortive close tears down both. */
export function join (a: net.Socket, b: net.Socket, conns: Set<net.Socket>): void {
  conns.add(a)
  conns.add(b)
  const kill = (): void => { a.destroy(); b.destroy(); conns.delete(a); conns.delete(b) }
  a.once('error', kill)
  b.once('error', kill)
  a.once('close', () => { if (!b.writableEnded) b.destroy(); conns.delete(a) })
  b.once('close', () => { if (!a.writableEnded) a.destroy(); conns.delete(b) })
  a.pipe(b)
  b.pipe(a)
}

const hostPort = (s: string | undefined, what: string): { host: string, port: number } => {
  const m = /^(.+):(\d+)$/.exec(s ?? '')
  if (m === null) throw new Error(`${what} must be HOST:PORT`)
  return { host: m[1], port: Number(m[2]) }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { role: { type: 'string' }, target: { type: 'string' }, link: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' }, ca: { type: 'string' } } })
  const conns = new Set<net.Socket>()
  let srv: net.Server
  if (values.role === 'exit') {
    const up = hostPort(values.target, '--target')
    if (values.cert === undefined || values.key === undefined) throw new Error('--role exit needs --cert and --key')
    srv = tls.createServer({ cert: readFileSync(values.cert), key: readFileSync(values.key), allowHalfOpen: true }, (link) => {
      link.setNoDelay(true)
      join(link, net.connect({ ...up, allowHalfOpen: true, noDelay: true }), conns)
    })
  } else if (values.role === 'entry') {
    const exit = hostPort(values.link, '--link')
    if (values.ca === undefined) throw new Error('--role entry needs --ca')
    const ca = readFileSync(values.ca)
    srv = net.createServer({ allowHalfOpen: true, noDelay: true }, (down) => {
      // allowHalfOpen is a net.Socket option tls.connect passes on; its types do not list it.
      const link = tls.connect({ ...exit, ca, servername: 'localhost', allowHalfOpen: true } as tls.ConnectionOptions)
      link.setNoDelay(true)
      join(down, link, conns)
    })
  } else {
    throw new Error('usage: secure-relay.ts --role exit|entry ...')
  }
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  process.send?.({ type: 'ready', port: (srv.address() as net.AddressInfo).port, pid: process.pid })
  const stop = (): void => { for (const c of conns) c.destroy(); srv.close(() => process.exit(0)) }
  process.once('SIGTERM', stop)
  process.once('disconnect', stop)
}
