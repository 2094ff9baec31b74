// Stream and session lifecycle, over each of the mux's own transports (memory,
// TCP, the ws library). The tests live in suites/lifecycle.ts; the root test
// test/mux-over-wsstream.test.ts runs the same suite over Tower's wsStream.
import { transports } from './helpers.ts'
import { lifecycleSuite } from './suites/lifecycle.ts'

for (const transport of transports) lifecycleSuite(transport)
