// `tower server` (standalone) and `tower agent` must not load
// @kubernetes/client-node: it is most of an idle process's memory (an idle
// standalone server measured 197 MiB RSS with it, 138 MiB without). Only the
// commands that talk to a Kubernetes API (join, --registry kubernetes) load it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const BIN = path.resolve(import.meta.dirname, '../bin/tower.js')

/** Runs `tower args` with a preload that reports, at exit, how many loaded CommonJS files are client-node's. */
async function clientNodeFiles (t: { after: (fn: () => void) => void }, args: string[]): Promise<{ files: number, stderr: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-cli-lazy-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const preload = path.join(dir, 'report.cjs')
  fs.writeFileSync(preload, "process.on('exit', () => process.stderr.write('\\nCLIENT_NODE_FILES=' + Object.keys(require.cache).filter((k) => k.includes('@kubernetes/client-node')).length + '\\n'))\n")
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TOWER_') && k !== 'KUBERNETES_SERVICE_HOST'))
  const stderr = await new Promise<string>((resolve) => {
    execFile(process.execPath, ['--require', preload, BIN, ...args.map((a) => a.replace('$DIR', dir))], { env: clean, timeout: 60_000 }, (_err, _stdout, err) => resolve(err))
  })
  const m = /CLIENT_NODE_FILES=(\d+)/.exec(stderr)
  assert.ok(m !== null, `the report is missing: ${stderr.slice(-500)}`)
  return { files: Number(m[1]), stderr }
}

test('tower server and tower agent (their --help, which loads every command module) load no client-node', async (t) => {
  for (const cmd of ['server', 'agent']) {
    const { files } = await clientNodeFiles(t, [cmd, '--help'])
    assert.equal(files, 0, `tower ${cmd} loaded ${files} files of @kubernetes/client-node`)
  }
})

test('tower join loads client-node when it runs (the check above can see it)', async (t) => {
  const { files, stderr } = await clientNodeFiles(t, ['join', 'kubefed', 'c1', '--state-dir', '$DIR/state', '--kubeconfig', '$DIR/missing.kubeconfig'])
  assert.match(stderr, /--kubeconfig/, 'the join fails on the missing kubeconfig, naming the flag')
  assert.ok(files > 0, 'the join loaded client-node')
})
