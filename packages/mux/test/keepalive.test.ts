// Keepalive on a mocked clock, over each of the mux's own transports (memory,
// TCP, the ws library). The tests live in suites/keepalive.ts; the root test
// test/mux-over-wsstream.test.ts runs the same suite over Tower's wsStream.
import { transports } from './helpers.ts'
import { keepaliveSuite } from './suites/keepalive.ts'

for (const transport of transports) keepaliveSuite(transport)
