// Data integrity and flow control, over each of the mux's own transports (memory,
// TCP, the ws library). The tests live in suites/data.ts; the root test
// test/mux-over-wsstream.test.ts runs the same suite over Tower's wsStream.
import { transports } from './helpers.ts'
import { dataSuite } from './suites/data.ts'

for (const transport of transports) dataSuite(transport)
