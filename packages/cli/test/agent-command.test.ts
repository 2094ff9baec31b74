// `tower agent` as an operator runs it: errors name the flag (never an
// internal option alone), files that cannot be read are TOWER_ERR_CREDENTIALS
// naming the flag and the path, and SIGTERM is a clean close at the server.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const BIN = path.resolve(import.meta.dirname, '../bin/tower.js')

function tower (args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    // no TOWER_* from the test's own environment
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TOWER_') && k !== 'KUBERNETES_SERVICE_HOST'))
    execFile(process.execPath, [BIN, ...args], { env: { ...clean, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? 1, stdout, stderr })
    })
  })
}

function tmp (t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-cli-agent-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'

test('tower agent: a file flag that cannot be read is TOWER_ERR_CREDENTIALS naming the flag and the path', async (t) => {
  const dir = tmp(t)
  const token = path.join(dir, 'token')
  const ca = path.join(dir, 'ca.crt')
  fs.writeFileSync(token, 'join-token\n')
  fs.writeFileSync(ca, PEM)
  const missing = path.join(dir, 'absent')
  const base = ['agent', '--server', 'wss://127.0.0.1:1', '--cluster', 'c1']
  const cases: Array<[string, string[]]> = [
    ['--ca-file', [...base, '--token-file', token, '--ca-file', missing, '--upstream', 'https://127.0.0.1:2']],
    ['--token-file', [...base, '--token-file', missing, '--ca-file', ca, '--upstream', 'https://127.0.0.1:2']],
    ['--upstream-ca-file', [...base, '--token-file', token, '--ca-file', ca, '--upstream', 'https://127.0.0.1:2', '--upstream-ca-file', missing]],
    ['--upstream-token-file', [...base, '--token-file', token, '--ca-file', ca, '--upstream', 'https://127.0.0.1:2', '--upstream-token-file', missing]]
  ]
  for (const [flag, args] of cases) {
    const r = await tower(args)
    assert.equal(r.code, 1, `${flag}: ${r.stderr}`)
    assert.match(r.stderr, /^tower: \[TOWER_ERR_CREDENTIALS\] /, flag)
    assert.ok(r.stderr.includes(`${flag} ${missing}`), `${flag}: ${r.stderr}`)
    assert.doesNotMatch(r.stderr, /\n\s+at /, `${flag}: no stack`)
  }
  // an empty token file is named too
  fs.writeFileSync(path.join(dir, 'empty'), '\n')
  const r = await tower([...base, '--token-file', path.join(dir, 'empty'), '--ca-file', ca, '--upstream', 'https://127.0.0.1:2'])
  assert.match(r.stderr, /^tower: \[TOWER_ERR_CREDENTIALS\] --token-file .*empty/)
})

test('tower agent: option errors name the flag (--ca-file, --allow-insecure-ws, --cluster)', async (t) => {
  const dir = tmp(t)
  const token = path.join(dir, 'token')
  fs.writeFileSync(token, 'join-token\n')
  const up = ['--upstream', 'https://127.0.0.1:2', '--token-file', token]
  const noCa = await tower(['agent', '--server', 'wss://127.0.0.1:1', '--cluster', 'c1', ...up])
  assert.equal(noCa.code, 1)
  assert.match(noCa.stderr, /^tower: \[TOWER_ERR_INVALID_ARG\] .*--ca-file.*--insecure-skip-verify/)
  const ws = await tower(['agent', '--server', 'ws://127.0.0.1:1', '--cluster', 'c1', ...up])
  assert.match(ws.stderr, /^tower: \[TOWER_ERR_INVALID_ARG\] .*--allow-insecure-ws/)
  const name = await tower(['agent', '--server', 'ws://127.0.0.1:1', '--allow-insecure-ws', '--cluster', 'Not_A_Label', ...up])
  assert.match(name.stderr, /^tower: \[TOWER_ERR_INVALID_ARG\] .*--cluster/)
  const sockets = await tower(['agent', '--server', 'ws://127.0.0.1:1', '--allow-insecure-ws', '--cluster', 'c1', '--upstream-max-sockets', '0', ...up])
  assert.match(sockets.stderr, /^tower: \[TOWER_ERR_INVALID_ARG\] .*--upstream-max-sockets/)
  const stray = await tower(['agent', '--server', 'ws://127.0.0.1:1', '--allow-insecure-ws', '--cluster', 'c1', '--token-file', token, '--upstream-token-file', token])
  assert.match(stray.stderr, /^tower: \[TOWER_ERR_USAGE\] --upstream-token-file needs --upstream/)
  const inCluster = await tower(['agent', '--server', 'ws://127.0.0.1:1', '--allow-insecure-ws', '--cluster', 'c1', '--token-file', token])
  assert.match(inCluster.stderr, /^tower: \[TOWER_ERR_USAGE\] not running in a cluster .*--upstream or --kubeconfig/)
})
