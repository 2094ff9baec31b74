import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import { Session, type MuxStream } from '@tower/mux'
import { sessionOptions } from '../src/config.ts'
import { encodePreamble, readPreamble } from '../src/preamble.ts'
import { towerPair } from './ws-pair.ts'

function sha (b: Buffer): string { return createHash('sha256').update(b).digest('hex') }

async function readAll (s: MuxStream): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of s) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

test('a mux session over wsStream carries streams both ways, with preamble and half-close', async (t) => {
  const pair = await towerPair({ randomMask: false })
  const server = new Session(pair.server, { ...sessionOptions(), client: true })
  const agent = new Session(pair.client, { ...sessionOptions(), client: false })
  t.after(async () => {
    server.destroy()
    agent.destroy()
    await pair.close()
  })

  // agent side: read the preamble, then echo the body prefixed with the id, FIN after the peer's FIN
  agent.on('stream', (st: MuxStream) => {
    void (async () => {
      const p = await readPreamble(st, 1000)
      const body = await readAll(st)
      st.end(Buffer.concat([Buffer.from(p.id + ':'), body]))
    })()
  })

  const payloads = Array.from({ length: 20 }, (_, i) => randomBytes(i * 50_000 + 1))
  await Promise.all(payloads.map(async (payload, i) => {
    const st = server.open()
    st.write(encodePreamble({ kind: 'tcp', id: `s${i}` }))
    st.end(payload)
    const back = await readAll(st)
    const prefix = Buffer.from(`s${i}:`)
    assert.equal(back.subarray(0, prefix.length).toString(), prefix.toString())
    assert.equal(sha(back.subarray(prefix.length)), sha(payload))
  }))

  // the session closes cleanly from the server end
  const agentClosed = once(agent, 'close')
  server.close()
  await agentClosed
})
