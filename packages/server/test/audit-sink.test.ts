import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { AUDIT_BATCH_BYTES, FileAuditSink, StreamAuditSink } from '../src/audit-sink.ts'
import os from 'node:os'
import { sinkLogger } from './helpers.ts'

function tmpDir (t: { after: (fn: () => unknown) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-audit-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

function record (i: number): string {
  return JSON.stringify({ kind: 'Event', seq: i, pad: 'x'.repeat(i % 97) })
}

test('the file rotates by size: no file past the maximum, backups capped, no line split, the newest lines kept in order', async (t) => {
  const dir = tmpDir(t)
  const file = path.join(dir, 'audit.log')
  const { logger } = sinkLogger('warn')
  const sink = new FileAuditSink({ path: file, maxSizeBytes: 4096, maxBackups: 3, logger })
  await sink.open()
  const total = 2000
  for (let i = 0; i < total; i++) {
    assert.equal(sink.write(record(i)), true)
    // Let the writer run now and then, as traffic would.
    if (i % 50 === 0) await new Promise((resolve) => setImmediate(resolve))
  }
  await sink.close()
  const names = fs.readdirSync(dir).filter((n) => n.startsWith('audit.log')).sort()
  assert.deepEqual(names, ['audit.log', 'audit.log.1', 'audit.log.2', 'audit.log.3'])
  const seqs: number[] = []
  for (const name of ['audit.log.3', 'audit.log.2', 'audit.log.1', 'audit.log']) {
    const text = fs.readFileSync(path.join(dir, name), 'utf8')
    assert.ok(Buffer.byteLength(text) <= 4096, `${name} is ${Buffer.byteLength(text)} bytes`)
    assert.ok(text.endsWith('\n'), `${name} ends with a whole line`)
    for (const line of text.slice(0, -1).split('\n')) seqs.push((JSON.parse(line) as { seq: number }).seq)
  }
  // The kept lines are the newest, consecutive, ending with the last one written.
  assert.equal(seqs.at(-1), total - 1)
  for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1]! + 1)
  assert.equal(sink.dropped, 0)
})

test('a file that cannot keep up drops records, counts them, and warns once per interval', async (t) => {
  const dir = tmpDir(t)
  const { logs, logger } = sinkLogger('warn')
  const sink = new FileAuditSink({ path: path.join(dir, 'audit.log'), maxQueueBytes: 10_000, logger })
  await sink.open()
  let accepted = 0
  // Synchronously, faster than any write can finish: the queue fills.
  for (let i = 0; i < 1000; i++) if (sink.write(record(i))) accepted++
  await sink.close()
  assert.ok(accepted < 1000, 'some were dropped')
  assert.equal(sink.dropped, 1000 - accepted)
  const lines = fs.readFileSync(path.join(dir, 'audit.log'), 'utf8').trimEnd().split('\n')
  assert.equal(lines.length, accepted)
  const warnings = logs.lines.filter((l) => String(l.msg).startsWith('audit record dropped'))
  assert.equal(warnings.length, 1)
})

test('the stream sink writes whole lines and drops once the stream has too much buffered', async () => {
  const { logger } = sinkLogger('warn')
  const out = new PassThrough({ highWaterMark: 16 })
  // flushMs 0: each line goes to the stream at once, so the stream fills as the lines come
  const sink = new StreamAuditSink({ stream: out, maxQueueBytes: 1000, flushMs: 0, logger })
  let accepted = 0
  for (let i = 0; i < 100; i++) if (sink.write(JSON.stringify({ seq: i, pad: 'x'.repeat(40) }))) accepted++
  assert.ok(accepted > 0 && accepted < 100)
  assert.equal(sink.dropped, 100 - accepted)
  out.end()
  let text = ''
  for await (const chunk of out) text += String(chunk)
  const lines = text.trimEnd().split('\n').map((l) => JSON.parse(l) as { seq: number })
  assert.deepEqual(lines.map((l) => l.seq), [...Array(accepted).keys()])
})

test('the stream sink gathers the lines of one interval into one write, and close() writes what is gathered', async () => {
  const { logger } = sinkLogger('warn')
  const writes: string[] = []
  const stream = { write: (chunk: string) => { writes.push(chunk); return true }, once: () => stream }
  const sink = new StreamAuditSink({ stream, flushMs: 40, logger })
  for (let i = 0; i < 5; i++) sink.write(record(i))
  assert.equal(writes.length, 0, 'nothing written before the interval ends')
  await new Promise((resolve) => setTimeout(resolve, 120))
  assert.equal(writes.length, 1, 'the five lines went in one write')
  assert.deepEqual(writes[0]!.trimEnd().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq), [0, 1, 2, 3, 4])
  // a batch that reaches AUDIT_BATCH_BYTES goes at once, whole lines only
  const big = JSON.stringify({ seq: 99, pad: 'y'.repeat(AUDIT_BATCH_BYTES) })
  sink.write(big)
  assert.equal(writes.length, 2)
  assert.equal(writes[1], big + '\n')
  sink.write(record(7))
  await sink.close()
  assert.equal(writes.length, 3, 'close() wrote the gathered line without waiting for the timer')
  assert.equal(writes[2], record(7) + '\n')
})

test('the file sink appends the lines of one interval when it ends, and close() writes the rest', async (t) => {
  const dir = tmpDir(t)
  const file = path.join(dir, 'audit.log')
  const { logger } = sinkLogger('warn')
  const sink = new FileAuditSink({ path: file, flushMs: 40, logger })
  await sink.open()
  for (let i = 0; i < 5; i++) sink.write(record(i))
  await new Promise((resolve) => setTimeout(resolve, 10))
  assert.equal(fs.readFileSync(file, 'utf8'), '', 'nothing appended before the interval ends')
  await new Promise((resolve) => setTimeout(resolve, 120))
  assert.equal(fs.readFileSync(file, 'utf8').trimEnd().split('\n').length, 5)
  sink.write(record(5))
  await sink.close()
  const seqs = fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq)
  assert.deepEqual(seqs, [0, 1, 2, 3, 4, 5])
})
