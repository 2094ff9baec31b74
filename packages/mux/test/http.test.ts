// node:http over mux streams, over each of the mux's own transports (memory,
// TCP, the ws library). The tests live in suites/http.ts; the root test
// test/mux-over-wsstream.test.ts runs the same suite over Tower's wsStream.
import { transports } from './helpers.ts'
import { httpSuite } from './suites/http.ts'

for (const transport of transports) httpSuite(transport)
