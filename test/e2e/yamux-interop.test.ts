/**
 * Interop with Go's github.com/hashicorp/yamux, the implementation Tower's
 * mux follows (packages/mux/spec.md), in both session roles: Go as the
 * session server with Tower as the client, and the other way round.
 *
 * The Go end is test/e2e/tools/yamux-peer/main.go, built outside the repo by
 * `bash test/e2e/tools/yamux-peer.sh`; without that build every test here
 * fails, naming the script. Each test starts its own peer on 127.0.0.1 (port
 * 0: the peer prints the port), connects a Tower Session to it over TCP with
 * the tunnel's production settings (sessionOptions), and drives it through
 * the peer's line commands (see main.go). The Tower end echoes every stream
 * the peer opens. Every test also checks that neither end logged a warning:
 * yamux logs a frame it does not expect, Tower logs a protocol violation.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { describe, it } from 'node:test'
import type { TestContext } from 'node:test'
import { Session } from '@tower/mux'
import type { MuxStream } from '@tower/mux'
import { sessionOptions } from '@tower/transport'
import { captureLogger, drain, sendRandom, until } from '../../packages/mux/test/helpers.ts'
import type { LogRecord } from '../../packages/mux/test/helpers.ts'
import { cacheRoot, MissingBinariesError } from './harness/index.ts'

const PEER_SOURCES = join(import.meta.dirname, 'tools', 'yamux-peer')
const BUILD_SCRIPT = 'test/e2e/tools/yamux-peer.sh'
const YAMUX = 'github.com/hashicorp/yamux'
const MiB = 1024 * 1024

/**
 * The peer binary as yamux-peer.sh left it: the folder is keyed on the yamux
 * version in go.mod, and the marker holds the digest of the sources, computed
 * here the way the script does (`sha256sum go.mod go.sum main.go | sha256sum`).
 * @throws MissingBinariesError when it is missing or built from other sources.
 */
function peerBinary (): string {
  const gomod = readFileSync(join(PEER_SOURCES, 'go.mod'), 'utf8')
  const match = new RegExp(`^(?:require\\s+)?${YAMUX.replaceAll('.', '\\.')}\\s+(\\S+)`, 'm').exec(gomod)
  if (match === null) throw new Error(`${YAMUX} is not required in ${join(PEER_SOURCES, 'go.mod')}`)
  const listing = ['go.mod', 'go.sum', 'main.go']
    .map((f) => `${createHash('sha256').update(readFileSync(join(PEER_SOURCES, f))).digest('hex')}  ${f}\n`)
    .join('')
  const digest = createHash('sha256').update(listing).digest('hex')
  const dir = join(cacheRoot(), `yamux-peer-${match[1]}`)
  const bin = join(dir, 'yamux-peer')
  const marker = join(dir, '.complete')
  const built = existsSync(bin) && existsSync(marker) ? readFileSync(marker, 'utf8').trim() : undefined
  if (built !== digest) {
    throw new MissingBinariesError(
      `the Go yamux peer is ${built === undefined ? 'not built' : 'stale (its sources changed)'} in ${dir}. ` +
      `Run \`bash ${BUILD_SCRIPT}\` (cold: about 10 s; later runs take a moment).`)
  }
  return bin
}

type Mode = 'client' | 'server'

interface Peer {
  session: Session
  records: LogRecord[]
  /** What the Go peer wrote to stderr (yamux's log) so far. */
  stderr: () => string
  /** Resolves with the exit code and stdout lines once the peer exits. */
  exited: Promise<{ code: number | null, stdout: string[] }>
}

/** Starts a Go peer whose session has role `mode` and connects a Tower Session of the other role. */
async function startPeer (t: TestContext, mode: Mode): Promise<Peer> {
  const child = spawn(peerBinary(), ['-mode', mode, '-timeout', '5m'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (s: string) => { stderr += s })
  const stdout: string[] = []
  const exited = once(child, 'exit').then(([code]) => ({ code: code as number | null, stdout }))
  t.after(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })

  const lines = createInterface({ input: child.stdout })
  const port = await new Promise<number>((resolve, reject) => {
    lines.on('line', (line) => {
      stdout.push(line)
      const m = /^listening (\d+)$/.exec(line)
      if (m !== null) resolve(Number(m[1]))
    })
    void exited.then(({ code }) => { reject(new Error(`yamux-peer exited (${code}) before listening: ${stderr}`)) })
  })
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  const { logger, records } = captureLogger()
  const session = new Session(socket, { ...sessionOptions({ logger }), client: mode === 'server' })
  session.on('stream', (stream: MuxStream) => { stream.pipe(stream) })
  t.after(() => { session.destroy() })
  return { session, records, stderr: () => stderr, exited }
}

/**
 * A window update Tower sent while Go's FIN was on its way: Go's side of the
 * stream was already gone when it arrived. Both ends return credit as their
 * reader drains, so the two frames can cross on the wire between any two
 * yamux peers, Go and Go included; yamux logs it and drops it.
 */
const CROSSED_WINDOW_UPDATE = /^.*\[WARN\] yamux: frame for missing stream: Vsn:0 Type:1 Flags:0 StreamID:\d+ Length:\d+$/gm

/** Fails when either end logged a warning or an error (but a crossed window update). */
function assertQuiet (peer: Peer): void {
  assert.doesNotMatch(peer.stderr().replace(CROSSED_WINDOW_UPDATE, ''), /\[(ERR|WARN)\]/, 'hashicorp/yamux logged a problem')
  const loud = peer.records.filter((r) => r.level === 'warn' || r.level === 'error')
  assert.deepEqual(loud, [], 'the Tower session logged a problem')
}

/** Reads `stream` to its end. */
async function readAll (stream: MuxStream): Promise<Buffer> {
  const chunks: Buffer[] = []
  stream.on('data', (c: Buffer) => chunks.push(c))
  await once(stream, 'end')
  return Buffer.concat(chunks)
}

/** Opens a stream, sends one command line and FIN, and returns the answer line. */
async function ask (session: Session, command: string): Promise<string> {
  const stream = session.open()
  stream.end(`${command}\n`)
  return (await readAll(stream)).toString().trim()
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

/** An `echo` round trip of `size` random bytes; resolves whether the echo matched. */
async function echo (session: Session, size: number): Promise<boolean> {
  const stream = session.open()
  stream.write('echo\n')
  const [sent, got] = await Promise.all([sendRandom(stream, size, 40_000), drain(stream)])
  return got.bytes === size && got.hash === sent
}

/** Sends `size` random bytes to `sha256` and checks the byte count and digest the peer answers. */
async function upload (session: Session, size: number): Promise<void> {
  const stream = session.open()
  stream.write('sha256\n')
  const [sent, answer] = await Promise.all([sendRandom(stream, size, 64 * 1024), readAll(stream)])
  assert.equal(answer.toString(), `${size} ${sent}\n`)
}

/** Receives `size` bytes from `source`; returns the stream, ended by the peer, still writable. */
async function download (session: Session, size: number): Promise<MuxStream> {
  const stream = session.open()
  stream.write(`source ${size}\n`)
  const got = await readAll(stream)
  const nl = got.indexOf('\n')
  assert.ok(nl > 0, 'source starts with its digest line')
  assert.equal(got.length - nl - 1, size)
  assert.equal(sha256(got.subarray(nl + 1)), got.subarray(0, nl).toString())
  return stream
}

for (const mode of ['server', 'client'] as const) {
  const tower = mode === 'server' ? 'client' : 'server'
  describe(`hashicorp/yamux as the session ${mode}, Tower as the ${tower}`, { timeout: 180_000 }, () => {
    it('carries 1,000 concurrent streams Tower opens, random sizes, echoed and checked by sha256', async (t) => {
      const peer = await startPeer(t, mode)
      const sizes = Array.from({ length: 1000 }, (_, i) => i === 0 ? 0 : Math.floor(Math.random() * 128 * 1024))
      const ok = await Promise.all(sizes.map(async (size) => await echo(peer.session, size)))
      assert.equal(ok.filter(Boolean).length, 1000)
      await until(() => peer.session.numStreams === 0, 10_000, 'streams released')
      assertQuiet(peer)
    })

    it('carries 1,000 concurrent streams Go opens, echoed by Tower and checked by sha256 in Go', async (t) => {
      const peer = await startPeer(t, mode)
      assert.equal(await ask(peer.session, 'open 1000 65536'), 'ok 1000')
      await until(() => peer.session.numStreams === 0, 10_000, 'streams released')
      assertQuiet(peer)
    })

    it('moves 32 MiB payloads both ways at once, checked by sha256', async (t) => {
      const peer = await startPeer(t, mode)
      const [goOpened] = await Promise.all([
        ask(peer.session, `open 2 ${32 * MiB}`),
        upload(peer.session, 32 * MiB),
        upload(peer.session, 32 * MiB),
        download(peer.session, 32 * MiB).then((s) => { s.end() }),
        download(peer.session, 32 * MiB).then((s) => { s.end() })
      ])
      assert.equal(goOpened, 'ok 2')
      await until(() => peer.session.numStreams === 0, 10_000, 'streams released')
      assertQuiet(peer)
    })

    it('half-closes both ways: each side still reads after its own FIN, and writes after the peer\'s', async (t) => {
      const peer = await startPeer(t, mode)
      // Tower ends first; Go answers after Tower's FIN.
      await upload(peer.session, 3 * MiB + 7)
      // Go ends first; Tower writes after Go's FIN, and Go reads it to Tower's FIN.
      const stream = await download(peer.session, 2 * MiB)
      assert.equal(stream.writable, true, 'the peer\'s FIN left our side writable')
      const late = randomBytes(MiB + 3)
      stream.end(late)
      assert.equal(await ask(peer.session, `result ${stream.id}`), `${late.length} ${sha256(late)}`)
      await until(() => peer.session.numStreams === 0, 10_000, 'streams released')
      assertQuiet(peer)
    })

    it('resets a stream Tower destroys mid-transfer: Go frees it and the session goes on', async (t) => {
      const peer = await startPeer(t, mode)
      const stream = peer.session.open()
      stream.on('error', () => {})
      stream.write('echo\n')
      stream.write(randomBytes(512 * 1024))
      await once(stream, 'data')
      stream.destroy()
      // Go handles the RST before the SYN of the next stream, which asks.
      assert.equal(await ask(peer.session, 'streams'), '1')
      assert.equal(await echo(peer.session, 100_000), true)
      assertQuiet(peer)
    })

    it('answers pings both ways', async (t) => {
      const peer = await startPeer(t, mode)
      const rtt = await peer.session.ping()
      assert.ok(rtt >= 0 && rtt < 10_000, `Tower's ping round trip ${rtt} ms`)
      assert.match(await ask(peer.session, 'ping'), /^ok \d+$/, 'Go\'s ping was answered')
      assertQuiet(peer)
    })

    it('obeys a GoAway from Go: Tower opens no new streams, open ones finish', async (t) => {
      const peer = await startPeer(t, mode)
      const open = peer.session.open()
      open.write('echo\n')
      const first = randomBytes(100_000)
      open.write(first)
      const goaway = once(peer.session, 'goaway') as Promise<[number]>
      assert.equal(await ask(peer.session, 'goaway'), 'ok')
      const [code] = await goaway
      assert.equal(code, 0)
      assert.throws(() => peer.session.open(), (err: Error & { code?: string }) => err.code === 'TOWER_ERR_SESSION_CLOSED')
      const second = randomBytes(300_000)
      open.end(second)
      assert.equal(sha256(await readAll(open)), sha256(Buffer.concat([first, second])))
      assertQuiet(peer)
    })

    it('sends a GoAway Go obeys: Go opens no new streams, open ones finish, then both ends close', async (t) => {
      const peer = await startPeer(t, mode)
      const probe = peer.session.open()
      probe.write('probe\n')
      const open = peer.session.open()
      open.write('echo\n')
      const first = randomBytes(100_000)
      open.write(first)
      const closed = once(peer.session, 'close') as Promise<[Error | undefined]>
      peer.session.close()
      probe.end('go\n')
      assert.equal((await readAll(probe)).toString(), 'refused remote end is not accepting connections\n')
      const second = randomBytes(300_000)
      open.end(second)
      assert.equal(sha256(await readAll(open)), sha256(Buffer.concat([first, second])))
      const [err] = await closed
      assert.equal(err, undefined, 'the session closed cleanly once its streams were done')
      const { code, stdout } = await peer.exited
      assert.equal(code, 0)
      assert.match(stdout.at(-1) ?? '', /^closed /, 'the Go session ended too')
      assertQuiet(peer)
    })
  })
}
