// HTTP/2 on the caller leg of proxy mode, end to end (issue 12): a client no one at Tower wrote, client-go
// (test/e2e/tools/clientgo, `probe`), lists, watches and creates ConfigMaps through a proxy-mode cluster
// port in front of the real member kube-apiserver, and must have negotiated HTTP/2 with Tower by ALPN.
// On the same port, kubectl's upgrades (exec, attach, port-forward) stay on HTTP/1.1 and still work, and
// so does logs -f. tunnel-kubectl.test.ts covers those in depth; here one short check each.
//
// Needs the binaries: bash test/e2e/tools/build.sh && bash test/e2e/tools/clientgo.sh.
// Run: node --test test/e2e/proxy-h2.test.ts (TOWER_E2E_VERBOSE=1 prints every process line).
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import {
  appendPodLog,
  cacheRoot,
  captureStdout,
  createFakeNodeAndPod,
  kubectl,
  kubectlOk,
  makeTempDir,
  portForward,
  startControlPlane,
  startKubectl,
  type ControlPlane,
  type FakePod
} from './harness/index.ts'
import {
  applyRepoManifest,
  echoOverTcp,
  REPO_ROOT,
  serviceAccountToken,
  startTowerAgent,
  startTowerServer,
  verboseLog,
  type TowerProcess,
  type TowerServerHandle
} from './tunnel-helpers.ts'

const CLIENTGO_SOURCES = join(REPO_ROOT, 'test', 'e2e', 'tools', 'clientgo')

/**
 * The built client-go program. The cache folder is named after the client-go version in go.mod, and the
 * marker holds the digest of the module's sources, computed here the way clientgo.sh does
 * (`sha256sum go.mod go.sum *.go | sha256sum`, .go files in C-locale order).
 */
function clientgoBinary (): string {
  const gomod = readFileSync(join(CLIENTGO_SOURCES, 'go.mod'), 'utf8')
  const version = /^\s*(?:require\s+)?k8s\.io\/client-go\s+(v\S+)/m.exec(gomod)?.[1]
  assert.ok(version !== undefined, 'clientgo/go.mod requires no k8s.io/client-go')
  const goFiles = readdirSync(CLIENTGO_SOURCES).filter((f) => f.endsWith('.go')).sort((a, b) => a < b ? -1 : a > b ? 1 : 0)
  const listing = ['go.mod', 'go.sum', ...goFiles]
    .map((f) => `${createHash('sha256').update(readFileSync(join(CLIENTGO_SOURCES, f))).digest('hex')}  ${f}\n`)
    .join('')
  const digest = createHash('sha256').update(listing).digest('hex')
  const dir = join(cacheRoot(), `clientgo-${version}`)
  const marker = join(dir, '.complete')
  const built = existsSync(marker) ? readFileSync(marker, 'utf8').trim() : undefined
  if (built !== digest) throw new Error(`the client-go test client in ${dir} is ${built === undefined ? 'missing' : 'stale'}: run bash test/e2e/tools/clientgo.sh`)
  return join(dir, 'clientgo')
}

interface ProbeResult { proto: string, listed: number, watched: boolean, name: string }

async function probe (bin: string, kubeconfig: string): Promise<ProbeResult> {
  return await new Promise((resolve, reject) => {
    execFile(bin, ['probe', '--kubeconfig', kubeconfig, '--timeout', '60s'], { timeout: 90_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`clientgo probe failed: ${err.message}\n${stderr}`))
      else resolve(JSON.parse(stdout) as ProbeResult)
    })
  })
}

describe('proxy mode speaks HTTP/2 to callers; upgrades stay on HTTP/1.1', { timeout: 600_000 }, () => {
  let cp: ControlPlane
  let tower: TowerServerHandle
  let agent: TowerProcess
  let pod: FakePod
  let kc: string
  let bin: string

  before(async () => {
    bin = clientgoBinary()
    cp = await startControlPlane({ kwok: true, log: verboseLog })
    const dir = makeTempDir('proxy-h2')
    const logDir = join(dir, 'logs')
    mkdirSync(logDir)
    tower = await startTowerServer(dir, { logDir })
    const cluster = await tower.addCluster('member-h2')
    kc = await tower.kubeconfig('member-h2')
    await applyRepoManifest(cp.member, 'deploy/agent/rbac.yaml')
    await applyRepoManifest(cp.member, 'deploy/agent/rbac-admin.yaml')
    const tokenFile = join(dir, 'sa-token')
    await serviceAccountToken(cp.member, 'tower-system', 'tower-agent', tokenFile)
    agent = await startTowerAgent(tower, cluster, { url: cp.member.url, caPem: cp.member.caPem, tokenFile }, { logDir })
    pod = await createFakeNodeAndPod(cp.member, { name: 'h2web', namespace: 'h2' })
  })

  after(async () => {
    await agent?.stop()
    await tower?.stop()
    await cp?.stop()
  })

  test('client-go lists, watches and sees its ADDED event over HTTP/2 through proxy mode', async () => {
    const direct = await probe(bin, cp.member.adminKubeconfigPath)
    console.log(`# client-go straight to the member: ${JSON.stringify(direct)}`)
    const through = await probe(bin, kc)
    console.log(`# client-go through Tower proxy mode: ${JSON.stringify(through)}`)
    assert.equal(through.proto, 'HTTP/2.0')
    assert.equal(through.watched, true)
    assert.ok(Number.isInteger(through.listed) && through.listed >= 0)
    assert.equal(direct.proto, 'HTTP/2.0', 'the member itself speaks h2: the comparison is like for like')
  })

  test('kubectl exec (WebSocket, then SPDY) on the same port', async () => {
    const envs: Array<Record<string, string>> = [{}, { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' }]
    for (const env of envs) {
      const r = await kubectl(kc, ['exec', '-n', pod.namespace, pod.pod, '--', 'echo', 'h2-port-exec'], { env })
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout, 'h2-port-exec\n')
    }
  })

  test('kubectl attach on the same port', async (t) => {
    const attach = startKubectl('attach-h2', kc, ['attach', '-n', pod.namespace, pod.pod])
    t.after(() => attach.stop())
    const out = captureStdout(attach)
    const mark = `attach-h2-${Date.now()}`
    let n = 0
    const printer = setInterval(() => appendPodLog(cp.kwok!.logsFile, `${mark}-${n++}`), 200)
    try {
      await out.waitFor(new RegExp(`${mark}-\\d+`), 30_000)
    } finally {
      clearInterval(printer)
    }
  })

  test('kubectl port-forward on the same port', async (t) => {
    const pf = await portForward(kc, pod.pod, 8080, { namespace: pod.namespace })
    t.after(() => pf.proc.stop())
    const payload = randomBytes(64 * 1024)
    assert.ok((await echoOverTcp(pf.localPort, payload)).equals(payload), 'port-forward echo differs')
  })

  test('kubectl logs -f on the same port', async (t) => {
    const first = `h2-first-${Date.now()}`
    appendPodLog(cp.kwok!.logsFile, first)
    assert.match(await kubectlOk(kc, ['logs', '-n', pod.namespace, pod.pod]), new RegExp(first))
    const follow = startKubectl('logs-f-h2', kc, ['logs', '-f', '-n', pod.namespace, pod.pod])
    t.after(() => follow.stop())
    const out = captureStdout(follow)
    await out.waitFor(new RegExp(first), 30_000)
    const later = `h2-later-${Date.now()}`
    appendPodLog(cp.kwok!.logsFile, later)
    await out.waitFor(new RegExp(later), 30_000)
    assert.equal(follow.exitStatus, null, 'logs -f still follows')
  })
})
