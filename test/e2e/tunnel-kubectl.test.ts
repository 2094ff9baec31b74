// Tower end to end against a real kube-apiserver (issue 3, tests 1, 2, 3 and 6): the `tower` CLI runs the
// server and one agent per member registration as separate processes; each agent authenticates to the
// member with a TokenRequest token of the ServiceAccount that deploy/agent/rbac.yaml creates; kubectl
// uses the kubeconfigs `tower kubeconfig` issues, in proxy mode (with and without --impersonate) and in
// passthrough mode; exec / attach / logs / port-forward go to a kwok pod over WebSocket and over SPDY.
//
// Needs the binaries: bash test/e2e/tools/build.sh. Run: node --test test/e2e/tunnel-kubectl.test.ts
// (TOWER_E2E_VERBOSE=1 prints every process line; TOWER_E2E_KEEP=1 keeps the control plane's temp dir).
//
// Two limits that are not Tower's, both reproduced WITHOUT Tower (kubectl straight to the member):
// - kwok v0.8.0 never closes an exec'ed command's stdin (pkg/utils/exec/exec.go copies the stream into
//   cmd.StdinPipe() and never closes the pipe), so `kubectl exec -i pod -- cat` cannot end after stdin EOF,
//   directly or through the tunnel. The stdin test therefore ends its input with `head -c N`; half-close
//   through the tunnel is checked with port-forward, whose echo (`cat`) does see EOF.
// - kubectl + kube-apiserver + kwok now and then lose the tail of an exec's stdout, and kubectl still exits 0
//   (direct, no Tower: 384 KiB echoed through `head -c`, SPDY 10 of 80 runs, WebSocket 1 of 80; `cat` of a
//   1 MiB file over WebSocket 1 of 50, with kubectl logging "Unknown stream id 1, discarding message").
//   Through Tower and through a plain Node TCP relay it happens at similar rates. Most likely cause: the
//   apiserver's upgrade proxy closes the client connection while the client's last frames are unread, so
//   the kernel sends RST and drops output not yet sent. With the input hashed inside and kubectl's stdin
//   closed right after it, SPDY still lost the output in 1 of 40 runs under load, directly, in proxy and in
//   passthrough mode alike; with kubectl's stdin left open until it exits, 0 of 120. So the stdin test
//   keeps stdin open (execKeepingStdinOpen); the stdout test sends no stdin. Both retry a wrong result
//   once and say so on stdout ("# RETRY").
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { FileRegistry } from '@tower/server'
import {
  appendPodLog,
  captureStdout,
  createFakeNodeAndPod,
  kubectl,
  kubectlOk,
  makeTempDir,
  portForward,
  SPDY_ENV,
  startControlPlane,
  startKubectl,
  waitFor,
  type ControlPlane,
  type FakePod
} from './harness/index.ts'
import {
  applyRepoManifest,
  execChecked,
  bulkCreateConfigMaps,
  closeWaitSockets,
  echoOverTcp,
  execInputChecked,
  getOnce,
  negotiatedAlpn,
  REPO_ROOT,
  serviceAccountToken,
  startTowerAgent,
  startTowerServer,
  verboseLog,
  type AddedCluster,
  type TowerProcess,
  type TowerServerHandle
} from './tunnel-helpers.ts'

const SA_USER = 'system:serviceaccount:tower-system:tower-agent'
const BULK_COUNT = 5000
/** A 1 MiB random file in kwok's exec working directory. */
const BIG_FILE = 'tower-e2e-big.bin'
let bigFileHashLine = ''
let bigFileBase64 = ''

function sha256 (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

/**
 * kubectl exec that must print `expected`. A mismatch is retried once and reported on stdout, because of
 * the upstream truncation race described at the top; a second mismatch is returned (and fails the test).
 */
interface WhoAmI { status: { userInfo: { username: string, groups?: string[] } } }

async function whoami (kubeconfig: string, extra: string[] = []): Promise<{ username: string, groups: string[] }> {
  const out = JSON.parse(await kubectlOk(kubeconfig, [...extra, 'auth', 'whoami', '-o', 'json'])) as WhoAmI
  return { username: out.status.userInfo.username, groups: out.status.userInfo.groups ?? [] }
}

/** `kubectl auth can-i ...`: 'yes' (exit 0) or 'no' (exit 1); anything else throws. */
async function canI (kubeconfig: string, args: string[]): Promise<string> {
  const r = await kubectl(kubeconfig, ['auth', 'can-i', ...args])
  const answer = r.stdout.trim()
  if (!((r.code === 0 && answer === 'yes') || (r.code === 1 && answer === 'no'))) {
    throw new Error(`auth can-i ${args.join(' ')}: code ${r.code}, stdout ${JSON.stringify(r.stdout)}, stderr ${r.stderr}`)
  }
  return answer
}

describe('tunnel e2e: kubectl through Tower to a real kube-apiserver', { timeout: 900_000 }, () => {
  let cp: ControlPlane
  let dir: string
  let tower: TowerServerHandle
  let pod: FakePod
  const clusters: Record<'proxy' | 'imp' | 'pt', AddedCluster & { port: number }> = {} as never
  const agents: TowerProcess[] = []
  let saTokenFile: string
  let saToken: string
  const saTokens: string[] = []
  // Kubeconfigs issued by `tower kubeconfig`.
  const kc = { proxy: '', proxyToken: '', imp: '', pt: '' }

  before(async () => {
    const started = Date.now()
    cp = await startControlPlane({ kwok: true, log: verboseLog })
    for (const server of [cp.host, cp.member]) {
      const v = JSON.parse(await server.kubectl(['version', '-o', 'json'])) as { serverVersion: { gitVersion: string } }
      console.log(`# ${server.name} kube-apiserver serverVersion.gitVersion = ${v.serverVersion.gitVersion}`)
    }
    dir = makeTempDir('tunnel')
    const logDir = join(dir, 'logs')
    mkdirSync(logDir)
    tower = await startTowerServer(dir, { logDir })
    clusters.proxy = await tower.addCluster('member-proxy')
    clusters.imp = await tower.addCluster('member-imp', { impersonate: true })
    clusters.pt = await tower.addCluster('member-pt', { mode: 'passthrough' })
    kc.proxy = await tower.kubeconfig('member-proxy')
    kc.proxyToken = await tower.kubeconfig('member-proxy', { token: true })
    kc.imp = await tower.kubeconfig('member-imp', { user: 'alice', groups: ['devs'] })
    kc.pt = await tower.kubeconfig('member-pt', { from: cp.member.adminKubeconfigPath })
    pod = await createFakeNodeAndPod(cp.member, { name: 'web', namespace: 'stream' })
    const big = randomBytes(1024 * 1024)
    writeFileSync(join(cp.kwok!.workDir, BIG_FILE), big)
    bigFileHashLine = `${sha256(big)}  ${BIG_FILE}\n`
    bigFileBase64 = big.toString('base64')
    console.log(`# control plane, Tower server and kwok pod ready in ${Date.now() - started} ms`)
  })

  after(async () => {
    for (const a of agents) await a.stop()
    await tower?.stop()
    await cp?.stop()
  })

  test('6. deploy/ manifests pass a server-side dry run on the host (server) and the member (agent)', async () => {
    // A server-side dry run does not persist the Namespace, so the namespaced objects of the same apply
    // would fail with `namespaces "tower-system" not found` on a fresh cluster: create the namespace from
    // deploy/server/namespace.yaml for real first, on both.
    for (const server of [cp.host, cp.member]) await applyRepoManifest(server, 'deploy/server/namespace.yaml')
    const host = await cp.host.kubectlResult(['apply', '--dry-run=server', '-f', join(REPO_ROOT, 'deploy', 'server')])
    assert.equal(host.code, 0, host.stderr)
    for (const obj of ['namespace/tower-system', 'serviceaccount/tower-server', 'persistentvolumeclaim/tower-state',
      'deployment.apps/tower-server', 'service/tower-server']) {
      assert.match(host.stdout, new RegExp(`${obj} (created|unchanged|configured) \\(server dry run\\)`))
    }
    const member = await cp.member.kubectlResult(['apply', '--dry-run=server', '-f', join(REPO_ROOT, 'deploy', 'agent')])
    assert.equal(member.code, 0, member.stderr)
    for (const obj of ['deployment.apps/tower-agent', 'serviceaccount/tower-agent',
      'clusterrole.rbac.authorization.k8s.io/tower-agent-impersonator',
      'clusterrolebinding.rbac.authorization.k8s.io/tower-agent-impersonator',
      'clusterrolebinding.rbac.authorization.k8s.io/tower-agent-admin']) {
      assert.match(member.stdout, new RegExp(`${obj} (created|unchanged|configured) \\(server dry run\\)`))
    }
    for (const r of [host, member]) assert.doesNotMatch(r.stderr, /Warning|unknown field/i)
    // Nothing was persisted: the agent's ServiceAccount does not exist yet.
    const sa = await cp.member.kubectlResult(['get', 'serviceaccount', 'tower-agent', '-n', 'tower-system'])
    assert.notEqual(sa.code, 0)
    assert.match(sa.stderr, /NotFound|not found/)
  })

  test('1. the agent authenticates as the tower-agent ServiceAccount (TokenRequest token), not as admin', async () => {
    // deploy/agent/rbac.yaml for real: the ServiceAccount with the impersonation ClusterRole only.
    await applyRepoManifest(cp.member, 'deploy/agent/rbac.yaml')
    saTokenFile = join(dir, 'sa-token')
    saToken = await serviceAccountToken(cp.member, 'tower-system', 'tower-agent', saTokenFile)
    const upstream = { url: cp.member.url, caPem: cp.member.caPem, tokenFile: saTokenFile }
    const logDir = join(dir, 'logs')
    for (const c of [clusters.proxy, clusters.imp, clusters.pt]) agents.push(await startTowerAgent(tower, c, upstream, { logDir }))

    // The member sees the ServiceAccount, and with rbac.yaml alone it may read nothing.
    const me = await whoami(kc.proxy)
    assert.equal(me.username, SA_USER)
    assert.ok(me.groups.includes('system:serviceaccounts:tower-system'), me.groups.join(','))
    const denied = await kubectl(kc.proxy, ['get', 'ns'])
    assert.notEqual(denied.code, 0)
    assert.match(denied.stderr, new RegExp(`User "${SA_USER}" cannot list resource "namespaces"`))

    // deploy/agent/rbac-admin.yaml for real (clusters registered without --impersonate): now it may.
    await applyRepoManifest(cp.member, 'deploy/agent/rbac-admin.yaml')
    await waitFor('the agent ServiceAccount to be allowed to list namespaces', async () =>
      (await kubectl(kc.proxy, ['get', 'ns', '-o', 'name'])).stdout.includes('namespace/tower-system') ? true : undefined,
    { timeoutMs: 30_000, intervalMs: 250 })
    assert.equal(await canI(kc.proxy, ['list', 'secrets', '--all-namespaces']), 'yes')

    // The token never shows up in Tower's logs.
    const logs = JSON.stringify([...tower.server.lines, ...agents.flatMap((a) => a.lines)])
    assert.ok(!logs.includes(saToken), 'the ServiceAccount token appeared in a Tower log line')
    assert.ok(!logs.includes(clusters.proxy.token), 'a join token appeared in a Tower log line')
  })

  test('1b. the server read each proxy member\'s Kubernetes version through its tunnel (GET /version as the agent); none for passthrough', async () => {
    const direct = (JSON.parse(await cp.member.kubectl(['version', '-o', 'json'])) as { serverVersion: { gitVersion: string } }).serverVersion.gitVersion
    const registry = await FileRegistry.open({ stateDir: tower.stateDir, create: false })
    const status = await waitFor('both proxy clusters\' versions in the server\'s status report', async () => {
      const s = await registry.readStatus()
      return s?.clusters['member-proxy']?.kubernetesVersion !== undefined && s.clusters['member-imp']?.kubernetesVersion !== undefined ? s : undefined
    }, { timeoutMs: 30_000, intervalMs: 250 })
    assert.equal(status.clusters['member-proxy']!.kubernetesVersion, direct)
    assert.equal(status.clusters['member-imp']!.kubernetesVersion, direct, 'an impersonating cluster is probed as the agent, with no caller identity')
    assert.equal(status.clusters['member-pt']!.agents.length, 1)
    assert.equal(status.clusters['member-pt']!.kubernetesVersion, undefined, 'passthrough clusters are not probed')
  })

  for (const mode of ['proxy', 'passthrough'] as const) {
    describe(`2. kubectl through the tunnel, ${mode} mode`, () => {
      const kcFor = (): string => mode === 'proxy' ? kc.proxy : kc.pt
      const ns = `e2e-${mode}`

      test('get ns', async () => {
        const names = (await kubectlOk(kcFor(), ['get', 'ns', '-o', 'name'])).split('\n')
        for (const n of ['default', 'kube-system', 'tower-system', 'stream']) assert.ok(names.includes(`namespace/${n}`), names.join(','))
        // Who the member sees: the agent's ServiceAccount (proxy), the member's own admin (passthrough).
        assert.equal((await whoami(kcFor())).username, mode === 'proxy' ? SA_USER : 'tower-e2e-admin')
        if (mode === 'proxy') {
          // The caller-token kubeconfig (what KubeFed stores) works the same.
          assert.match(await kubectlOk(kc.proxyToken, ['get', 'ns', 'default', '-o', 'name']), /namespace\/default/)
        }
      })

      test('apply -f and delete of a Deployment and a ConfigMap', async () => {
        const list = {
          apiVersion: 'v1',
          kind: 'List',
          items: [
            { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
            { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: ns }, data: { mode, greeting: 'hello' } },
            {
              apiVersion: 'apps/v1',
              kind: 'Deployment',
              metadata: { name: 'web', namespace: ns },
              spec: {
                replicas: 2,
                selector: { matchLabels: { app: 'web' } },
                template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'registry.example/web:1' }] } }
              }
            }
          ]
        }
        const file = join(dir, `apply-${mode}.json`)
        writeFileSync(file, JSON.stringify(list))
        const out = await kubectlOk(kcFor(), ['apply', '-f', file])
        assert.match(out, /configmap\/settings created/)
        assert.match(out, /deployment.apps\/web created/)
        // Directly on the member:
        assert.equal(await cp.member.kubectl(['get', 'cm', 'settings', '-n', ns, '-o', 'jsonpath={.data.mode}']), mode)
        assert.equal(await cp.member.kubectl(['get', 'deploy', 'web', '-n', ns, '-o', 'jsonpath={.spec.replicas}']), '2')
        // A second apply with a change goes through the three-way merge (GET + PATCH).
        list.items[1] = { ...list.items[1]!, data: { mode, greeting: 'changed' } } as never
        writeFileSync(file, JSON.stringify(list))
        assert.match(await kubectlOk(kcFor(), ['apply', '-f', file]), /configmap\/settings configured/)
        assert.equal(await cp.member.kubectl(['get', 'cm', 'settings', '-n', ns, '-o', 'jsonpath={.data.greeting}']), 'changed')

        const del = await kubectlOk(kcFor(), ['delete', '-n', ns, 'deployment/web', 'configmap/settings'])
        assert.match(del, /deployment.apps "web" deleted/)
        assert.match(del, /configmap "settings" deleted/)
        for (const obj of ['deployment/web', 'configmap/settings']) {
          const r = await cp.member.kubectlResult(['get', '-n', ns, obj])
          assert.notEqual(r.code, 0)
          assert.match(r.stderr, /NotFound|not found/)
        }
      })

      test('apply --server-side', async () => {
        const cm = (value: string): string => JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ssa', namespace: ns }, data: { value } })
        assert.match(await kubectlOk(kcFor(), ['apply', '--server-side', '--field-manager=tower-e2e', '-f', '-'], { input: cm('one') }),
          /configmap\/ssa serverside-applied/)
        assert.match(await kubectlOk(kcFor(), ['apply', '--server-side', '--field-manager=tower-e2e', '-f', '-'], { input: cm('two') }),
          /configmap\/ssa serverside-applied/)
        const obj = JSON.parse(await cp.member.kubectl(['get', 'cm', 'ssa', '-n', ns, '-o', 'json', '--show-managed-fields'])) as {
          data: { value: string }, metadata: { managedFields: Array<{ manager: string, operation: string }> }
        }
        assert.equal(obj.data.value, 'two')
        assert.ok(obj.metadata.managedFields.some((f) => f.manager === 'tower-e2e' && f.operation === 'Apply'),
          JSON.stringify(obj.metadata.managedFields))
        // A conflicting manager is refused by the member's field ownership, through the tunnel.
        const conflict = await kubectl(kcFor(), ['apply', '--server-side', '--field-manager=other', '-f', '-'], { input: cm('three') })
        assert.notEqual(conflict.code, 0)
        assert.match(conflict.stderr, /conflict/i)
      })

      test('get --raw /openapi/v3 and a large OpenAPI document', async () => {
        const index = JSON.parse(await kubectlOk(kcFor(), ['get', '--raw', '/openapi/v3'])) as { paths: Record<string, { serverRelativeURL: string }> }
        assert.ok(index.paths['api/v1'] !== undefined, Object.keys(index.paths).join(','))
        assert.ok(index.paths['apis/apps/v1'] !== undefined)
        const raw = await kubectlOk(kcFor(), ['get', '--raw', index.paths['api/v1']!.serverRelativeURL])
        const direct = await cp.member.kubectl(['get', '--raw', index.paths['api/v1']!.serverRelativeURL])
        assert.ok(raw.length > 1_000_000, `api/v1 document is ${raw.length} bytes`)
        assert.equal(raw, direct)
        const doc = JSON.parse(raw) as { openapi: string, components: { schemas: Record<string, unknown> } }
        assert.match(doc.openapi, /^3\./)
        assert.ok(doc.components.schemas['io.k8s.api.core.v1.Pod'] !== undefined)
      })

      test('get --watch sees objects created and deleted directly on the member', async (t) => {
        await cp.member.kubectl(['create', 'configmap', 'seed', '-n', ns])
        const watch = startKubectl(`watch-${mode}`, kcFor(), ['get', 'configmaps', '-n', ns, '--watch', '--output-watch-events', '-o', 'json'])
        t.after(() => watch.stop())
        const out = captureStdout(watch)
        // One JSON watch event per line: {"type":"ADDED","object":{...}}.
        const event = (type: string, name: string): RegExp => new RegExp(`^\\{"type":"${type}","object":\\{.*"name":"${name}","namespace":"${ns}"`, 'm')
        // The initial list arrived: from here the watch runs from that resourceVersion, so nothing is missed.
        await out.waitFor(event('ADDED', 'seed'), 30_000)
        const name = `watched-${randomBytes(3).toString('hex')}`
        await cp.member.kubectl(['create', 'configmap', name, '-n', ns, '--from-literal=k=v'])
        await out.waitFor(event('ADDED', name), 30_000)
        await cp.member.kubectl(['label', 'configmap', name, '-n', ns, 'seen=yes'])
        await out.waitFor(event('MODIFIED', name), 30_000)
        await cp.member.kubectl(['delete', 'configmap', name, '-n', ns])
        await out.waitFor(event('DELETED', name), 30_000)
        assert.equal(watch.exitStatus, null, 'the watch is still running')
      })

      test(`a list of ${BULK_COUNT} ConfigMaps`, async () => {
        if (mode === 'proxy') {
          // Created once, directly on the member; the passthrough test lists the same ones.
          await cp.member.kubectl(['create', 'namespace', 'bulk'])
          const started = Date.now()
          await bulkCreateConfigMaps(cp.member, 'bulk', BULK_COUNT, { labels: { bulk: 'yes' } })
          console.log(`# created ${BULK_COUNT} ConfigMaps on the member in ${Date.now() - started} ms`)
        }
        const started = Date.now()
        const table = await kubectlOk(kcFor(), ['get', 'cm', '-n', 'bulk', '--no-headers'], { timeoutMs: 120_000 })
        const lines = table.split('\n').filter((l) => l !== '')
        console.log(`# kubectl get cm (${lines.length} rows) through the tunnel (${mode}) in ${Date.now() - started} ms`)
        assert.equal(lines.length, BULK_COUNT)
        assert.equal(new Set(lines.map((l) => l.split(/\s+/)[0])).size, BULK_COUNT)
        // One unpaginated list of every object as JSON (a single response of several MB).
        const json = JSON.parse(await kubectlOk(kcFor(), ['get', 'cm', '-n', 'bulk', '-l', 'bulk=yes', '--chunk-size=0', '-o', 'json'],
          { timeoutMs: 120_000 })) as { items: Array<{ data: { index: string } }> }
        assert.equal(json.items.length, BULK_COUNT)
        assert.deepEqual(new Set(json.items.map((i) => Number(i.data.index))).size, BULK_COUNT)
      })

      test('protobuf: a list asked for as application/vnd.kubernetes.protobuf comes back as protobuf', async () => {
        const res = await getOnce(kcFor(), '/api/v1/namespaces/bulk/configmaps?limit=500',
          { accept: 'application/vnd.kubernetes.protobuf' })
        assert.equal(res.status, 200, res.body.toString().slice(0, 300))
        assert.equal(res.headers['content-type'], 'application/vnd.kubernetes.protobuf')
        // Kubernetes' protobuf envelope: the magic "k8s\0", then the Unknown message naming the kind.
        assert.ok(res.body.subarray(0, 4).equals(Buffer.from('k8s\0', 'latin1')), 'no protobuf magic')
        assert.ok(res.body.includes(Buffer.from('ConfigMapList')), 'not a ConfigMapList')
        assert.ok(res.body.length > 500 * 40, `${res.body.length} bytes for 500 ConfigMaps`)
      })

      test('ALPN: which protocol a client negotiates on the cluster port', async () => {
        const alpn = await negotiatedAlpn(kcFor())
        console.log(`# ALPN through the tunnel (${mode}), offering h2 and http/1.1: ${String(alpn)}`)
        // passthrough: TLS is the member's own, so HTTP/2 is negotiated with the kube-apiserver end to end.
        if (mode === 'passthrough') assert.equal(alpn, 'h2')
        else assert.ok(alpn === 'http/1.1' || alpn === 'h2' || alpn === false, String(alpn))
      })
    })
  }

  test('2. --impersonate: auth whoami and can-i show that the caller identity reached the member', async () => {
    // alice may read ConfigMaps in alice-ns; group devs may list pods in devs-ns; nothing else.
    // rbac.yaml lets the agent impersonate only the users and groups it names (tower-admin by
    // default): the operator adds the callers it serves, as its comments say.
    const rbac = {
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'tower-agent-impersonate-alice' }, rules: [{ apiGroups: [''], resources: ['users'], verbs: ['impersonate'], resourceNames: ['alice'] }, { apiGroups: [''], resources: ['groups'], verbs: ['impersonate'], resourceNames: ['devs'] }] },
        { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'tower-agent-impersonate-alice' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'tower-agent-impersonate-alice' }, subjects: [{ kind: 'ServiceAccount', name: 'tower-agent', namespace: 'tower-system' }] },
        { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'alice-ns' } },
        { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'devs-ns' } },
        { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'for-alice', namespace: 'alice-ns' }, data: { k: 'v' } },
        { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'cm-reader', namespace: 'alice-ns' }, rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch'] }] },
        { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'alice-cm-reader', namespace: 'alice-ns' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'cm-reader' }, subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'alice' }] },
        { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'pod-lister', namespace: 'devs-ns' }, rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['list'] }] },
        { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'devs-pod-lister', namespace: 'devs-ns' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'pod-lister' }, subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'devs' }] }
      ]
    }
    await cp.member.kubectl(['apply', '-f', '-'], { input: JSON.stringify(rbac) })

    const me = await whoami(kc.imp)
    assert.equal(me.username, 'alice')
    assert.ok(me.groups.includes('devs'), me.groups.join(','))
    assert.ok(!me.groups.some((g) => g.startsWith('system:serviceaccount')), me.groups.join(','))

    const checks: Array<[string[], string]> = [
      [['get', 'configmaps', '-n', 'alice-ns'], 'yes'],
      [['list', 'configmaps', '-n', 'alice-ns'], 'yes'],
      [['list', 'secrets', '-n', 'alice-ns'], 'no'],
      [['list', 'configmaps', '-n', 'default'], 'no'],
      [['list', 'pods', '-n', 'devs-ns'], 'yes'], // through the group
      [['list', 'namespaces'], 'no']
    ]
    // RBAC objects just created reach the authorizer's cache within moments: wait for the first grant.
    await waitFor('alice\'s RoleBinding to take effect', async () =>
      (await canI(kc.imp, ['get', 'configmaps', '-n', 'alice-ns'])) === 'yes' ? true : undefined, { timeoutMs: 30_000, intervalMs: 250 })
    for (const [args, expected] of checks) assert.equal(await canI(kc.imp, args), expected, `alice: can-i ${args.join(' ')}`)
    // The agent's own identity (cluster-admin via rbac-admin.yaml) would say yes where alice says no.
    assert.equal(await canI(kc.proxy, ['list', 'secrets', '-n', 'alice-ns']), 'yes')

    assert.match(await kubectlOk(kc.imp, ['get', 'cm', '-n', 'alice-ns', '-o', 'name']), /configmap\/for-alice/)
    const forbidden = await kubectl(kc.imp, ['get', 'secrets', '-n', 'alice-ns'])
    assert.notEqual(forbidden.code, 0)
    assert.match(forbidden.stderr, /User "alice" cannot list resource "secrets"/)

    // Impersonation headers a caller sends are dropped: neither cluster lets a caller pick its identity.
    const smuggle = ['--as=system:admin', '--as-group=system:masters']
    assert.equal((await whoami(kc.imp, smuggle)).username, 'alice')
    assert.equal((await whoami(kc.proxy, smuggle)).username, SA_USER)
  })

  for (const mode of ['proxy', 'passthrough'] as const) {
    for (const [protocol, env] of [['WebSocket', {}], ['SPDY', SPDY_ENV]] as const) {
      describe(`3. exec / attach / port-forward / logs through the tunnel, ${mode} mode, kubectl over ${protocol}`, () => {
        const kcFor = (): string => mode === 'proxy' ? kc.proxy : kc.pt
        const tag = `${mode}-${protocol}`

        test('exec -i: 384 KiB of stdin reach the container intact', async () => {
          // More than one mux window (256 KiB). The command hashes exactly what it read: kwok v0.8.0 never
          // closes an exec'ed command's stdin (see the note at the top), so `head -c` ends the input, and
          // kubectl's stdin stays open until it exits (execKeepingStdinOpen says why).
          const payload = randomBytes(384 * 1024)
          const expected = `${sha256(payload)}  -\n`
          const out = await execInputChecked(kcFor(), ['exec', '-i', '-n', pod.namespace, pod.pod, '--', 'sh', '-c', `head -c ${payload.length} | sha256sum`],
            payload, { env }, expected)
          assert.equal(out, expected)
        })

        test('exec: 1 MiB of stdout comes back intact', async () => {
          const out = await execChecked(kcFor(), ['exec', '-n', pod.namespace, pod.pod, '--', 'sha256sum', BIG_FILE], { env }, bigFileHashLine)
          assert.equal(out, bigFileHashLine, 'the file kwok serves is the one the test wrote')
          const raw = await execChecked(kcFor(), ['exec', '-n', pod.namespace, pod.pod, '--', 'base64', '-w0', BIG_FILE], { env }, bigFileBase64)
          assert.equal(raw.length, bigFileBase64.length)
          assert.ok(raw === bigFileBase64, 'exec stdout differs from the file')
        })

        test('exec separates stdout and stderr, and reports a failing command', async () => {
          const r = await kubectl(kcFor(), ['exec', '-n', pod.namespace, pod.pod, '--', 'sh', '-c', `echo out-${tag}; echo err-${tag} >&2`], { env })
          assert.equal(r.code, 0, r.stderr)
          assert.equal(r.stdout, `out-${tag}\n`)
          assert.match(r.stderr, new RegExp(`err-${tag}`))
          const failed = await kubectl(kcFor(), ['exec', '-n', pod.namespace, pod.pod, '--', 'sh', '-c', 'exit 3'], { env })
          assert.notEqual(failed.code, 0)
          assert.match(failed.stderr, /exit status 3/)
        })

        test('logs and logs -f', async (t) => {
          const first = `first-${tag}-${Date.now()}`
          appendPodLog(cp.kwok!.logsFile, first)
          assert.match(await kubectlOk(kcFor(), ['logs', '-n', pod.namespace, pod.pod], { env }), new RegExp(first))
          const follow = startKubectl(`logs-f-${tag}`, kcFor(), ['logs', '-f', '-n', pod.namespace, pod.pod], { env })
          t.after(() => follow.stop())
          const out = captureStdout(follow)
          await out.waitFor(new RegExp(first), 30_000)
          const later = `later-${tag}-${Date.now()}`
          appendPodLog(cp.kwok!.logsFile, later)
          await out.waitFor(new RegExp(later), 30_000)
          assert.equal(follow.exitStatus, null, 'logs -f still follows')
        })

        test('attach streams what the container prints', async (t) => {
          const attach = startKubectl(`attach-${tag}`, kcFor(), ['attach', '-n', pod.namespace, pod.pod], { env })
          t.after(() => attach.stop())
          const out = captureStdout(attach)
          // attach shows only lines printed after it is connected, and nothing says when that is: keep
          // printing numbered lines until one arrives (bounded by waitFor's deadline).
          const mark = `attach-${tag}-${Date.now()}`
          let n = 0
          const printer = setInterval(() => appendPodLog(cp.kwok!.logsFile, `${mark}-${n++}`), 200)
          try {
            await out.waitFor(new RegExp(`${mark}-\\d+`), 30_000)
          } finally {
            clearInterval(printer)
          }
        })

        test('port-forward: bytes both ways, and a half-close reaches the pod', async (t) => {
          const pf = await portForward(kcFor(), pod.pod, 8080, { namespace: pod.namespace, env })
          t.after(() => pf.proc.stop())
          // The pod's port 8080 is `cat`: it answers only with what it got, and ends only after our FIN.
          const payload = randomBytes(300 * 1024)
          const back = await echoOverTcp(pf.localPort, payload)
          assert.equal(back.length, payload.length)
          assert.ok(back.equals(payload), 'port-forward echo differs')
          // A second connection over the same kubectl: another stream pair on the same upgraded connection.
          assert.equal((await echoOverTcp(pf.localPort, Buffer.from(`again-${tag}`))).toString(), `again-${tag}`)
        })
      })
    }
  }

  test('1. the agent re-reads its ServiceAccount token file when it changes', async () => {
    const callProxy = (): Promise<{ code: number | null, stderr: string }> => kubectl(kc.proxy, ['get', '--raw', '/version'])
    writeFileSync(saTokenFile, 'not-a-valid-token\n', { mode: 0o600 })
    await waitFor('the member to refuse the replaced token', async () => {
      const r = await callProxy()
      return r.code !== 0 && /Unauthorized/.test(r.stderr) ? true : undefined
    }, { timeoutMs: 30_000, intervalMs: 250 })
    // A new TokenRequest token, as the kubelet's projected-token rotation would write it.
    const rotated = await serviceAccountToken(cp.member, 'tower-system', 'tower-agent', saTokenFile)
    assert.notEqual(rotated, saToken)
    saTokens.push(rotated)
    await waitFor('the rotated token to be used', async () => (await callProxy()).code === 0 ? true : undefined,
      { timeoutMs: 30_000, intervalMs: 250 })
    assert.equal((await whoami(kc.proxy)).username, SA_USER)
  })

  // Found by this suite: proxy-mode cluster ports used to leave sockets whose peer closed before the TLS
  // handshake in CLOSE_WAIT (the listener was half-open), so a LoadBalancer's TCP health checks leaked fds
  // and blocked shutdown. Fixed in packages/server (only upgraded sockets are half-open now).
  test('proxy cluster port: connections closed before the TLS handshake are released (TCP health checks)', async () => {
    for (const c of [clusters.proxy, clusters.pt]) {
      for (let i = 0; i < 20; i++) {
        const sock = connect(c.port, '127.0.0.1')
        await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject) })
        // Close at once (FIN), as a TCP health check does. (Waiting for the server's FIN would hang: that is the bug.)
        sock.destroy()
        await new Promise((resolve) => sock.once('close', resolve))
      }
    }
    for (const c of [clusters.pt, clusters.proxy]) {
      await waitFor(`${c.name}: no socket left in CLOSE_WAIT`, async () => (await closeWaitSockets(c.port)) === 0 ? true : undefined,
        { timeoutMs: 5_000, intervalMs: 200 })
    }
  })

  test('Tower logs carry no secrets, and every agent is still connected', () => {
    const procs = [tower.server, ...agents]
    const text = procs.map((p) => JSON.stringify(p.lines) + '\n' + p.process.tail(400)).join('\n')
    for (const c of Object.values(clusters)) assert.ok(!text.includes(c.token), `join token of ${c.name} in a log`)
    for (const token of [saToken, ...saTokens]) assert.ok(!text.includes(token), 'ServiceAccount token in a log')
    for (const a of agents) assert.equal(a.process.exitStatus, null, `${a.name} is still running`)
    // One "connected to server" each: no agent had to reconnect during the run.
    for (const a of agents) assert.equal(a.lines.filter((l) => l.msg === 'connected to server').length, 1, a.name)
  })
})
