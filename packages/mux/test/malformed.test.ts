// A session facing a raw, hostile peer, over each of the mux's own transports (memory,
// TCP, the ws library). The tests live in suites/malformed.ts; the root test
// test/mux-over-wsstream.test.ts runs the same suite over Tower's wsStream.
import { transports } from './helpers.ts'
import { malformedSuite } from './suites/malformed.ts'

for (const transport of transports) malformedSuite(transport)
