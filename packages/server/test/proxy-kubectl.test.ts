// Item 30 with the real client: kubectl (/usr/bin/kubectl) against a proxy
// cluster port whose cluster has had no agent for longer than the grace.
// It must fail at once, without client-go's Retry-After loop, and print
// Tower's message rather than a generic sentence.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { CALLER_TOKEN, proxyRig, type ProxyRig } from './proxy-harness.ts'

const KUBECTL = '/usr/bin/kubectl'

function kubeconfig (rig: ProxyRig, dir: string): string {
  const file = path.join(dir, 'kubeconfig')
  fs.writeFileSync(file, [
    'apiVersion: v1', 'kind: Config',
    'clusters:', '- name: c1', '  cluster:', `    server: https://127.0.0.1:${rig.port}`, `    certificate-authority-data: ${Buffer.from(rig.caPem).toString('base64')}`,
    'users:', '- name: u', '  user:', `    token: ${CALLER_TOKEN}`,
    'contexts:', '- name: c1', '  context:', '    cluster: c1', '    user: u',
    'current-context: c1', ''
  ].join('\n'), { mode: 0o600 })
  return file
}

async function kubectl (args: string[], home: string): Promise<{ code: number, stderr: string }> {
  return await new Promise((resolve) => {
    execFile(KUBECTL, args, { env: { PATH: process.env.PATH ?? '/usr/bin', HOME: home } }, (err, _stdout, stderr) => {
      resolve({ code: err === null ? 0 : Number((err as { code?: unknown }).code ?? 1), stderr })
    })
  })
}

test('kubectl against a cluster offline for an hour fails without retrying and prints Tower\'s message', async (t) => {
  const rig = await proxyRig(t, { limits: { offlineGraceMs: 10_000 } })
  const since = Date.now() - 3_600_000
  rig.state.pickError = Object.assign(new Error('no agent connected for cluster "c1"'), { code: 'TOWER_ERR_NO_AGENT', offlineSince: since })
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-kubectl-'))
  t.after(() => fs.rmSync(home, { recursive: true, force: true }))
  const file = kubeconfig(rig, home)
  for (const args of [['get', 'pods'], ['get', '--raw', '/api/v1/namespaces']]) {
    const before = rig.logs.find('request not delivered').length
    const r = await kubectl(['--kubeconfig', file, ...args], home)
    assert.notEqual(r.code, 0)
    assert.ok(r.stderr.includes(`no agent connected for cluster \\"c1\\" since ${new Date(since).toISOString()}`) ||
      r.stderr.includes(`no agent connected for cluster "c1" since ${new Date(since).toISOString()}`), `kubectl ${args.join(' ')}: ${r.stderr}`)
    assert.doesNotMatch(r.stderr, /currently unable to handle the request/)
    // client-go repeats a request only on Retry-After; each path was asked a
    // handful of times at most (discovery's own attempts), never ten.
    const paths = rig.logs.find('request not delivered').slice(before).map((l) => l.path as string)
    const most = Math.max(...[...new Set(paths)].map((p) => paths.filter((x) => x === p).length))
    assert.ok(most < 10, `requests per path: ${JSON.stringify(paths)}`)
  }
})
