import { writeFileSync } from 'node:fs'
import { startControlPlane, createFakeNodeAndPod, makeTempDir } from './harness/index.ts'
import { startTowerServer, startTowerAgent, agentServiceAccountToken } from './tunnel-helpers.ts'
const t0 = Date.now()
const cp = await startControlPlane({ kwok: true, log: (l) => { if (!l.startsWith('[')) console.log(l) } })
console.log('cp up', Date.now() - t0, cp.member.version)
const dir = makeTempDir('tdev')
const tokenFile = await agentServiceAccountToken(cp.member, dir, { admin: true })
const tower = await startTowerServer(dir)
const out: any = { cp: { member: cp.member.url, memberKc: cp.member.adminKubeconfigPath, hostKc: cp.host.adminKubeconfigPath, kwok: cp.kwok }, dir, stateDir: tower.stateDir, agentPort: tower.agentPort, clusters: {} }
for (const [name, o] of [['px', {}], ['imp', { impersonate: true }], ['pt', { mode: 'passthrough' }]] as const) {
  const c = await tower.addCluster(name, o as any)
  await startTowerAgent(tower, c, { url: cp.member.url, caPem: cp.member.caPem, tokenFile }, { logDir: dir })
  out.clusters[name] = { port: c.port }
}
out.kc = {
  px: await tower.kubeconfig('px'),
  imp: await tower.kubeconfig('imp', { user: 'alice', groups: ['devs'] }),
  pt: await tower.kubeconfig('pt', { from: cp.member.adminKubeconfigPath })
}
const pod = await createFakeNodeAndPod(cp.member, { name: 'web', namespace: 'stream' })
out.pod = pod
writeFileSync('/tmp/tdev/env.json', JSON.stringify(out, null, 2))
console.log('READY', Date.now() - t0)
process.on('SIGTERM', async () => { await cp.stop(); process.exit(0) })
setInterval(() => {}, 100000)
