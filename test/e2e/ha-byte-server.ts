/**
 * The HA e2e test's pod application: the soak's byte server (GET /bytes/<n>: n deterministic bytes with
 * a Content-Length) as a child process inside the member's network namespace, where kwok's port-forward
 * rule reaches 127.0.0.1 (the test process cannot listen there itself). Prints {"port":N} once listening;
 * SIGTERM closes it.
 *
 * Usage: node --experimental-strip-types test/e2e/ha-byte-server.ts <seed>
 */
import { startByteServer } from '../soak/byte-server.ts'
import { DeterministicStream } from '../soak/rng.ts'

const seed = Number(process.argv[2])
if (!Number.isInteger(seed)) {
  process.stderr.write('usage: ha-byte-server.ts <seed>\n')
  process.exit(2)
}
const server = await startByteServer(new DeterministicStream(seed))
process.stdout.write(JSON.stringify({ port: server.port }) + '\n')
process.on('SIGTERM', () => { void server.close().then(() => process.exit(0)) })
