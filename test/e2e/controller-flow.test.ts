// Issue 9, the whole controller-mode flow with kubectl, on the real host kube-apiserver of the harness:
// deploy/controller's CRD and RBAC applied (and the whole kustomization validated with --dry-run=server),
// the real `tower server --registry kubernetes` process running as ServiceAccount tower-server with a
// token from `kubectl create token`, so exactly that RBAC is proven sufficient; a Cluster applied with
// kubectl gets its port, Service, Secrets and Initialized; `tower cluster manifest` validates on the
// member apiserver; an agent in a network namespace joins with the token from the Secret; AgentAvailable
// and status.kubernetesVersion follow it; kubectl with the kubeconfig from the Secret reaches the member
// through the port; a server restart keeps ports and tokens and the agent comes back; a killed agent turns
// AgentAvailable False within one keepalive period; deleting the Cluster cleans everything up.
//
// Needs root (network namespaces) and the binaries (bash test/e2e/tools/build.sh).
// Run: node --experimental-strip-types --test test/e2e/controller-flow.test.ts
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml'
import { SESSION_DEFAULTS } from '@tower/transport'
import {
  canConnect,
  createNetns,
  kubectlOk,
  makeTempDir,
  netnsSupport,
  probeFreePort,
  waitFor,
  writeKubeconfig,
  type ControlPlane,
  type Netns
} from './harness/index.ts'
import { startControlPlane } from './harness/index.ts'
import { REPO_ROOT, serviceAccountToken, startTower, towerCli, towerOk, verboseLog, type TowerProcess } from './tunnel-helpers.ts'

const NS = 'tower-system'
const CLUSTER = 'flow'
const support = netnsSupport()
if (!support.supported) console.log(`# SKIPPED the controller-flow test (issue 9): ${support.reason}`)

type Obj = Record<string, any>

/** `count` consecutive ports that can all be bound on `host` right now (the server binds them later). */
async function freeRange (host: string, count: number): Promise<{ first: number, last: number }> {
  const canBind = async (port: number): Promise<boolean> => {
    const srv = createServer()
    srv.listen(port, host)
    try {
      await once(srv, 'listening')
      srv.close()
      await once(srv, 'close')
      return true
    } catch {
      return false
    }
  }
  for (let attempt = 0; attempt < 20; attempt++) {
    const first = await probeFreePort(host)
    if (first + count > 65535) continue
    let ok = true
    for (let p = first; p < first + count && ok; p++) ok = await canBind(p)
    if (ok) return { first, last: first + count - 1 }
  }
  throw new Error(`no ${count} consecutive free ports on ${host}`)
}

function condition (cluster: Obj | undefined, type: string): Obj | undefined {
  const list: unknown = cluster?.status?.conditions
  return Array.isArray(list) ? list.find((c: Obj) => c?.type === type) : undefined
}

describe('controller mode e2e: kubectl apply a Cluster, join an agent from a network namespace', {
  timeout: 600_000,
  skip: support.supported ? false : support.reason
}, () => {
  const started = Date.now()
  let ns: Netns
  let cp: ControlPlane
  let dir: string
  let logDir: string
  let serverKubeconfig: string
  let range: { first: number, last: number }
  let server: TowerProcess
  let agentPort = 0
  let agent: TowerProcess | undefined
  let generation = 0
  // What the first reconcile produced; the restart must keep it.
  const first = { port: 0, token: '', uid: '' }

  const host = (args: string[], input?: string): Promise<string> => cp.host.kubectl(args, input === undefined ? {} : { input })
  const getJson = async (args: string[]): Promise<Obj | undefined> => {
    const r = await cp.host.kubectlResult(['get', ...args, '-o', 'json'])
    if (r.code !== 0) {
      if (/NotFound|not found/.test(r.stderr)) return undefined
      throw new Error(`kubectl get ${args.join(' ')}: ${r.stderr}`)
    }
    return JSON.parse(r.stdout) as Obj
  }
  const cluster = (): Promise<Obj | undefined> => getJson(['cluster.cluster.kubesphere.io', CLUSTER])
  const secretValue = async (name: string, key: string): Promise<string | undefined> => {
    const s = await getJson(['secret', name, '-n', NS])
    const v: unknown = s?.data?.[key]
    return typeof v === 'string' ? Buffer.from(v, 'base64').toString('utf8') : undefined
  }
  /** `tower <args>` against the host cluster as its admin (the operator's kubeconfig, not the server's). */
  const towerAdmin = (args: string[]): Promise<string> =>
    towerOk([...args, '--registry', 'kubernetes', '--kubeconfig', cp.host.adminKubeconfigPath, '--namespace', NS], { timeoutMs: 60_000 })

  const startServer = async (extra: string[] = []): Promise<void> => {
    generation++
    server = startTower(`tower-server-k8s-${generation}`, [
      'server', '--registry', 'kubernetes', '--kubeconfig', serverKubeconfig, '--namespace', NS,
      '--listen', `${ns.hostAddress}:${agentPort}`, '--cluster-host', ns.hostAddress,
      '--advertise-host', ns.hostAddress, '--san', ns.hostAddress,
      '--port-range', `${range.first}-${range.last}`, '--identity', `e2e-${generation}`, '--log-level', 'debug', ...extra
    ], { logDir })
    const listening = await server.waitFor((l) => l.msg === 'agent endpoint listening', 60_000)
    agentPort = Number(listening.port)
  }

  before(async () => {
    ns = await createNetns({ log: verboseLog })
    cp = await startControlPlane({ netns: ns.name, log: verboseLog })
    dir = makeTempDir('controller-flow')
    logDir = join(dir, 'logs')
    mkdirSync(logDir)
    range = await freeRange(ns.hostAddress, 10)
    console.log(`# host kube-apiserver ${cp.host.version} at ${cp.host.url}; member ${cp.member.version} in netns ${ns.name}; cluster ports ${range.first}-${range.last} on ${ns.hostAddress}`)
  })

  after(async () => {
    await agent?.stop()
    await server?.stop()
    await cp?.stop()
    await ns?.delete()
    console.log(`# controller-flow e2e time: ${((Date.now() - started) / 1000).toFixed(1)} s`)
  })

  test('deploy/controller validates with --dry-run=server; the CRD and RBAC are applied for real', async () => {
    // A fresh cluster has no tower-system yet, and a server-side dry run creates nothing, so the
    // namespaced objects can only be validated once the Namespace exists: first the cluster-scoped part.
    const fresh = await cp.host.kubectlResult(['apply', '--dry-run=server', '-f', join(REPO_ROOT, 'deploy/controller/namespace.yaml'),
      '-f', join(REPO_ROOT, 'deploy/controller/crd.yaml')])
    assert.equal(fresh.code, 0, fresh.stderr)
    assert.match(fresh.stdout, /customresourcedefinition.* created \(server dry run\)/)
    await host(['apply', '-f', join(REPO_ROOT, 'deploy/controller/namespace.yaml')])
    const dry = await host(['apply', '-k', join(REPO_ROOT, 'deploy/controller'), '--dry-run=server'])
    for (const what of ['customresourcedefinition.apiextensions.k8s.io/clusters.cluster.kubesphere.io', 'serviceaccount/tower-server',
      'role.rbac.authorization.k8s.io/tower-server', 'rolebinding.rbac.authorization.k8s.io/tower-server', 'clusterrole.rbac.authorization.k8s.io/tower-server',
      'clusterrolebinding.rbac.authorization.k8s.io/tower-server', 'service/tower-server', 'deployment.apps/tower-server']) {
      assert.ok(dry.split('\n').includes(`${what} created (server dry run)`), `${what} not validated:\n${dry}`)
    }
    // For real: everything but the Deployment (this harness has no kubelet; the test runs the server
    // process itself, as the same ServiceAccount).
    for (const f of ['crd.yaml', 'rbac.yaml', 'service.yaml']) await host(['apply', '-f', join(REPO_ROOT, 'deploy/controller', f)])
    await host(['wait', '--for=condition=Established', 'crd/clusters.cluster.kubesphere.io', '--timeout=60s'])
    // Established comes a moment before the resource is served: lists get 429 until then.
    await waitFor('Clusters served', async () => (await cp.host.kubectlResult(['get', 'clusters.cluster.kubesphere.io'])).code === 0 ? true : undefined,
      { timeoutMs: 30_000, intervalMs: 250 })
    const token = await serviceAccountToken(cp.host, NS, 'tower-server', join(dir, 'server-sa-token'))
    serverKubeconfig = writeKubeconfig(join(dir, 'tower-server.kubeconfig'), { server: cp.host.url, caPem: cp.host.caPem, name: 'tower-server', token, namespace: NS })
    // The ServiceAccount is bound to that RBAC only: it cannot, say, list Secrets elsewhere.
    const denied = await cp.host.kubectlResult(['--kubeconfig', serverKubeconfig, 'get', 'secrets', '-n', 'kube-system'])
    assert.notEqual(denied.code, 0)
    assert.match(denied.stderr, /forbidden/i)
  })

  test('tower server --registry kubernetes starts as that ServiceAccount', async () => {
    await startServer()
    assert.ok(agentPort > 0)
  })

  test('kubectl apply a Cluster: port, Service, Secrets, endpoint, Initialized', async () => {
    await host(['apply', '-f', '-'], stringifyYaml({
      apiVersion: 'cluster.kubesphere.io/v1alpha1',
      kind: 'Cluster',
      metadata: { name: CLUSTER, labels: { 'cluster-role.kubesphere.io/member': '' } },
      spec: { provider: 'e2e', connection: { type: 'proxy' } }
    }))
    const c = await waitFor('Initialized=True', async () => {
      const obj = await cluster()
      return condition(obj, 'Initialized')?.status === 'True' ? obj : undefined
    }, { timeoutMs: 60_000, intervalMs: 500, proc: server.process })
    const port = c.spec.connection.kubernetesAPIServerPort
    assert.ok(Number.isInteger(port) && port >= range.first && port <= range.last, `port ${port} outside ${range.first}-${range.last}`)
    assert.equal(c.spec.connection.kubernetesAPIEndpoint, `https://mc-${CLUSTER}.${NS}.svc:6443`)
    assert.equal(c.spec.connection.token, undefined, 'a token was written into the spec')
    assert.ok(c.metadata.finalizers.includes('tower.kubesphere.io/cleanup'))
    first.port = port
    first.uid = c.metadata.uid

    const svc = (await getJson(['service', `mc-${CLUSTER}`, '-n', NS]))!
    assert.equal(svc.spec.type, 'ClusterIP')
    assert.equal(svc.spec.selector, undefined, 'mc-<name> has no selector: the replicas\' EndpointSlices route it')
    assert.deepEqual(svc.spec.ports.map((p: Obj) => ({ name: p.name, port: p.port, targetPort: p.targetPort })), [{ name: 'kube-api', port: 6443, targetPort: port }])
    for (const name of [`tower-join-${CLUSTER}`, `tower-callers-${CLUSTER}`, `tower-kubeconfig-${CLUSTER}`, `mc-${CLUSTER}`]) {
      const kind = name.startsWith('mc-') ? 'service' : 'secret'
      const o = (await getJson([kind, name, '-n', NS]))!
      assert.equal(o.metadata.labels['app.kubernetes.io/managed-by'], 'tower', `${kind} ${name}`)
      assert.equal(o.metadata.labels['tower.kubesphere.io/cluster'], CLUSTER, `${kind} ${name}`)
      assert.ok(o.metadata.ownerReferences?.some((r: Obj) => r.kind === 'Cluster' && r.uid === first.uid), `${kind} ${name} is not owned by the Cluster`)
    }
    const ports = (await getJson(['configmap', 'tower-ports', '-n', NS]))!
    assert.equal(ports.data[String(port)], `${CLUSTER}/${first.uid}`)
    first.token = (await secretValue(`tower-join-${CLUSTER}`, 'token'))!
    assert.match(first.token, /^\S{40,}$/)
    // The cluster port is up on the server.
    await server.waitFor((l) => l.msg === 'cluster listener ready' && l.cluster === CLUSTER, 30_000)
    assert.equal(await canConnect(ns.hostAddress, port, 2000), true)
  })

  test('tower cluster list and tower cluster manifest read the host cluster', async () => {
    const rows = JSON.parse(await towerAdmin(['cluster', 'list', '--output', 'json'])) as Obj[]
    const row = rows.find((r) => r.name === CLUSTER)
    assert.ok(row !== undefined, JSON.stringify(rows))
    assert.equal(row.port, first.port)
    assert.equal(row.mode, 'proxy')

    const r = await towerCli(['cluster', 'manifest', CLUSTER, '--server', `wss://${ns.hostAddress}:${agentPort}`,
      '--registry', 'kubernetes', '--kubeconfig', cp.host.adminKubeconfigPath, '--namespace', NS], { timeoutMs: 60_000 })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stderr.includes(first.token), false, 'the token was printed on stderr')
    assert.equal(r.stdout.includes(first.token), false, 'the token is in clear text in the manifest')
    writeFileSync(join(dir, 'manifest.yaml'), r.stdout, { mode: 0o600 })
    const docs = r.stdout.split(/^---$/m).map((d) => parseYaml(d, { version: '1.1' }) as Obj)
    const secret = docs.find((d) => d.kind === 'Secret')!
    const data = (k: string): string => Buffer.from(secret.data[k], 'base64').toString('utf8')
    assert.equal(data('token'), first.token)
    assert.equal(data('cluster'), CLUSTER)
    assert.equal(data('server'), `wss://${ns.hostAddress}:${agentPort}`)
    assert.equal(data('ca.crt').trim(), (await secretValue('tower-ca', 'tls.crt'))!.trim())

    // Validated by the member apiserver: the Namespace for real first (a dry run creates nothing, and
    // everything else lives in it), then the whole manifest.
    await cp.member.kubectl(['apply', '-f', '-'], { input: stringifyYaml(docs.find((d) => d.kind === 'Namespace')) })
    const dry = await cp.member.kubectl(['apply', '--dry-run=server', '-f', '-'], { input: r.stdout })
    for (const what of ['serviceaccount/tower-agent', 'clusterrole.rbac.authorization.k8s.io/tower-agent-impersonator',
      'clusterrolebinding.rbac.authorization.k8s.io/tower-agent-impersonator', 'secret/tower-agent', 'deployment.apps/tower-agent']) {
      assert.match(dry, new RegExp(`${what.replace(/\./g, '\\.')} created \\(server dry run\\)`), dry)
    }
    // And for real (nothing runs it here, no kubelet: the agent below is a process in the namespace).
    await cp.member.kubectl(['apply', '-f', '-'], { input: r.stdout })
    // Without --impersonate every request acts as the agent's ServiceAccount (deploy/agent/rbac-admin.yaml).
    await cp.member.kubectl(['apply', '-f', join(REPO_ROOT, 'deploy/agent/rbac-admin.yaml')])
  })

  test('the CLI on the host cluster: cluster add, kubeconfig --token, tokens, token --rotate, remove; --state-dir refused', async () => {
    const name = 'cli-added'
    const added = JSON.parse(await towerAdmin(['cluster', 'add', name, '--output', 'json', '--wait', '30s'])) as Obj
    assert.ok(added.port >= range.first && added.port <= range.last && added.port !== first.port, `port ${added.port}`)
    assert.equal(added.token, await secretValue(`tower-join-${name}`, 'token'))
    assert.equal(added.caPem.trim(), (await secretValue('tower-ca', 'tls.crt'))!.trim())
    const kc = join(dir, `${name}-token.kubeconfig`)
    const issued = await towerCli(['kubeconfig', name, '--token', '--user', 'bob', '--out', kc,
      '--registry', 'kubernetes', '--kubeconfig', cp.host.adminKubeconfigPath, '--namespace', NS], { timeoutMs: 60_000 })
    assert.equal(issued.code, 0, issued.stderr)
    const id = /caller token id ([0-9a-f]+)/.exec(issued.stderr)?.[1]
    const tokens = JSON.parse(await towerAdmin(['cluster', 'tokens', name, '--output', 'json'])) as Obj[]
    assert.deepEqual(tokens.map((t) => [t.id, t.user]), [[id, 'bob']])
    const rotated = JSON.parse(await towerAdmin(['cluster', 'token', name, '--rotate', '--output', 'json'])) as Obj
    assert.notEqual(rotated.token, added.token)
    assert.equal(rotated.token, await secretValue(`tower-join-${name}`, 'token'))
    assert.match(await towerAdmin(['cluster', 'remove', name]), /removed/)
    assert.equal(await getJson(['cluster.cluster.kubesphere.io', name]), undefined)
    await waitFor(`Secret tower-join-${name} gone`, async () => (await getJson(['secret', `tower-join-${name}`, '-n', NS])) === undefined ? true : undefined, { timeoutMs: 30_000, intervalMs: 500 })
    // A flag of the other registry, typed, is a usage error.
    const wrong = await towerCli(['cluster', 'list', '--registry', 'kubernetes', '--kubeconfig', cp.host.adminKubeconfigPath, '--state-dir', dir])
    assert.equal(wrong.code, 1)
    assert.match(wrong.stderr, /^tower: \[TOWER_ERR_USAGE\] --state-dir applies to --registry file only/)
  })

  const startAgent = async (): Promise<TowerProcess> => {
    const agentDir = join(dir, 'agent')
    mkdirSync(agentDir, { recursive: true })
    // The join token and CA exactly as the member holds them, from the Secret the manifest created.
    const memberSecret = JSON.parse(await cp.member.kubectl(['get', 'secret', 'tower-agent', '-n', NS, '-o', 'json'])) as Obj
    const file = (n: string, content: string): string => { const p = join(agentDir, n); writeFileSync(p, content, { mode: 0o600 }); return p }
    const data = (k: string): string => Buffer.from(memberSecret.data[k], 'base64').toString('utf8')
    const saToken = (await cp.member.kubectl(['create', 'token', 'tower-agent', '-n', NS, '--duration=1h'])).trim()
    const a = startTower(`tower-agent-${CLUSTER}`, ['agent',
      '--server', data('server'), '--cluster', data('cluster'),
      '--token-file', file('token', data('token')), '--ca-file', file('ca.crt', data('ca.crt')),
      '--upstream', cp.member.url, '--upstream-ca-file', file('member-ca.crt', cp.member.caPem),
      '--upstream-token-file', file('sa-token', saToken + '\n'),
      '--reconnect-min-ms', '200', '--reconnect-max-ms', '2000'], { netns: ns.name, logDir })
    await a.waitFor((l) => l.msg === 'connected to server', 30_000)
    return a
  }

  const waitAgentAvailable = async (status: 'True' | 'False', timeoutMs: number): Promise<Obj> =>
    await waitFor(`AgentAvailable=${status}`, async () => {
      const c = await cluster()
      return condition(c, 'AgentAvailable')?.status === status ? c : undefined
    }, { timeoutMs, intervalMs: 250, proc: server.process })

  test('an agent in the network namespace joins with the token from the Secret: AgentAvailable, kubernetesVersion', async () => {
    agent = await startAgent()
    const c = await waitAgentAvailable('True', 30_000)
    const cond = condition(c, 'AgentAvailable')!
    assert.equal(cond.reason, 'AgentConnected')
    assert.match(cond.message, /^1 agent/)
    assert.ok(!Number.isNaN(Date.parse(cond.lastTransitionTime)))
    const version = await waitFor('status.kubernetesVersion', async () => (await cluster())?.status?.kubernetesVersion as string | undefined,
      { timeoutMs: 30_000, intervalMs: 500, proc: server.process })
    assert.equal(version, cp.member.version)
    const agents = JSON.parse((await cluster())!.metadata.annotations['tower.kubesphere.io/agents']) as Obj[]
    assert.equal(agents.length, 1)
    assert.equal(typeof agents[0]!.id, 'string')
  })

  /** The kubeconfig Tower stored, pointed at the server's port directly: no kube-proxy in this harness. */
  const directKubeconfig = async (): Promise<string> => {
    const text = (await secretValue(`tower-kubeconfig-${CLUSTER}`, 'kubeconfig'))!
    const kc = parseYaml(text) as Obj
    const entry = kc.clusters[0].cluster
    assert.equal(entry.server, `https://mc-${CLUSTER}.${NS}.svc:6443`)
    assert.ok(!JSON.stringify(kc).includes('system:masters'))
    entry.server = `https://${ns.hostAddress}:${first.port}`
    // The certificate still has to verify as the Service name the kubeconfig was made for.
    entry['tls-server-name'] = `mc-${CLUSTER}.${NS}.svc`
    const path = join(dir, 'from-secret.kubeconfig')
    writeFileSync(path, stringifyYaml(kc), { mode: 0o600 })
    return path
  }

  test('kubectl with the kubeconfig from the Secret reaches the member through the port', async () => {
    await cp.member.kubectl(['create', 'namespace', 'only-in-member'])
    const kc = await directKubeconfig()
    const names = (await kubectlOk(kc, ['get', 'ns', '-o', 'name'])).split('\n')
    assert.ok(names.includes('namespace/only-in-member'), names.join(','))
    assert.equal(JSON.parse(await kubectlOk(kc, ['get', '--raw', '/version'])).gitVersion, cp.member.version)
    // The host cannot reach the member itself: only the tunnel does.
    assert.equal(await canConnect(ns.nsAddress, cp.member.port, 2000), false)
    // `tower kubeconfig` issues another credential for the same port.
    const issued = join(dir, 'issued.kubeconfig')
    await towerAdmin(['kubeconfig', CLUSTER, '--server-host', ns.hostAddress, '--server-port', String(first.port), '--out', issued])
    const issuedKc = parseYaml(readFileSync(issued, 'utf8')) as Obj
    assert.equal(issuedKc.clusters[0].cluster.server, `https://${ns.hostAddress}:${first.port}`)
    assert.ok((await kubectlOk(issued, ['get', 'ns', '-o', 'name'])).includes('namespace/only-in-member'))
  })

  test('restart the server (now with --kubesphere-compat): same port, same token, the agent reconnects', async () => {
    const before = agent!.lines.filter((l) => l.msg === 'connected to server').length
    assert.equal((await cluster())!.spec.connection.kubeconfig, undefined, 'a kubeconfig in the spec without --kubesphere-compat')
    await server.stop()
    await startServer(['--kubesphere-compat'])
    await waitFor('the agent connected again', async () => agent!.lines.filter((l) => l.msg === 'connected to server').length > before ? true : undefined,
      { timeoutMs: 30_000, intervalMs: 200 })
    const c = await waitAgentAvailable('True', 30_000)
    assert.equal(c.spec.connection.kubernetesAPIServerPort, first.port)
    assert.equal(c.metadata.uid, first.uid)
    assert.equal(await secretValue(`tower-join-${CLUSTER}`, 'token'), first.token)
    assert.ok((await kubectlOk(await directKubeconfig(), ['get', 'ns', '-o', 'name'])).includes('namespace/only-in-member'))
    // KubeSphere's controller-manager reads the kubeconfig from the spec (base64, a []byte in Go).
    const inSpec = await waitFor('spec.connection.kubeconfig', async () => (await cluster())?.spec?.connection?.kubeconfig as string | undefined,
      { timeoutMs: 30_000, intervalMs: 500, proc: server.process })
    assert.equal(Buffer.from(inSpec, 'base64').toString('utf8'), await secretValue(`tower-kubeconfig-${CLUSTER}`, 'kubeconfig'))
  })

  test('kill the agent: AgentAvailable goes False within one keepalive period', async () => {
    const keepAliveMs = SESSION_DEFAULTS.keepAliveInterval
    await agent!.process.stop(0)
    const killedAt = Date.now()
    const c = await waitAgentAvailable('False', keepAliveMs)
    const took = Date.now() - killedAt
    console.log(`# AgentAvailable False ${took} ms after the agent was killed (keepalive interval ${keepAliveMs} ms)`)
    const cond = condition(c, 'AgentAvailable')!
    assert.equal(cond.reason, 'AgentDisconnected')
    assert.ok(took <= keepAliveMs)
    agent = undefined
  })

  test('delete the Cluster: port closed, Service, Secrets and port entry gone, finalizer released', async () => {
    await host(['delete', 'cluster.cluster.kubesphere.io', CLUSTER, '--wait=false'])
    await waitFor('the Cluster gone', async () => (await cluster()) === undefined ? true : undefined, { timeoutMs: 30_000, intervalMs: 500, proc: server.process })
    for (const [kind, name] of [['service', `mc-${CLUSTER}`], ['secret', `tower-join-${CLUSTER}`], ['secret', `tower-callers-${CLUSTER}`], ['secret', `tower-kubeconfig-${CLUSTER}`]] as const) {
      await waitFor(`${kind} ${name} gone`, async () => (await getJson([kind, name, '-n', NS])) === undefined ? true : undefined, { timeoutMs: 30_000, intervalMs: 500 })
    }
    const ports = await getJson(['configmap', 'tower-ports', '-n', NS])
    assert.equal(ports?.data?.[String(first.port)], undefined)
    await waitFor('the cluster port closed', async () => (await canConnect(ns.hostAddress, first.port, 1000)) ? undefined : true, { timeoutMs: 10_000, intervalMs: 200 })
    // Nothing managed by Tower is left for this cluster.
    const left = await host(['get', 'secrets,services', '-n', NS, '-l', `tower.kubesphere.io/cluster=${CLUSTER}`, '-o', 'name'])
    assert.equal(left.trim(), '')
  })
})
