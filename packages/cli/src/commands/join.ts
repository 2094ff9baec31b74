/**
 * `tower join kubefed|karmada <name>`: what `kubefedctl join` and
 * `karmadactl join` do, but pointed at the tunnel. Tower issues a caller
 * token for the cluster and writes, into the federation control plane, a
 * cluster object whose endpoint is the cluster's Tower port and whose CA is
 * Tower's, plus the Secret holding that token (see
 * packages/controller/src/federation). Running it again replaces the token
 * and revokes the one it replaced; `--leave` removes both objects and
 * revokes the token they held.
 *
 * For the file registry (the state directory); with `--registry
 * kubernetes` the reconciler does the same from `--join-kubefed`.
 */
import type { Argv } from 'yargs'
import { KubeConfig } from '@kubernetes/client-node'
import {
  DEFAULT_KARMADA_SECRET_NAMESPACE, DEFAULT_KUBEFED_NAMESPACE, joinKarmada, joinKubeFed, leaveKarmada, leaveKubeFed,
  type FederationMember, type JoinResult, type LeaveResult
} from '@tower/controller'
import { FileRegistry, type ClusterRegistry } from '@tower/server'
import { outputOption, stateDirOption, UsageError } from '../options.ts'

type Target = 'kubefed' | 'karmada'

interface JoinArgs {
  target: Target
  name: string
  stateDir: string
  kubeconfig: string
  namespace: string
  user: string
  groups: string[]
  serverHost?: string
  leave: boolean
  output: string
}

function loadKubeconfig (path: string, flag: string): KubeConfig {
  const kc = new KubeConfig()
  try {
    kc.loadFromFile(path)
  } catch (err) {
    throw new UsageError(`${flag} ${path}: ${(err as Error).message}`)
  }
  if (kc.getCurrentCluster() === null) throw new UsageError(`${flag} ${path} has no current cluster`)
  return kc
}

/** Revokes a caller token, treating "already gone" as done. */
async function revoke (registry: ClusterRegistry, name: string, id: string): Promise<boolean> {
  try {
    return await registry.revokeCallerTokens(name, id) > 0
  } catch (err) {
    if ((err as { code?: unknown }).code === 'TOWER_ERR_UNKNOWN_TOKEN') return false
    throw err
  }
}

async function join (registry: ClusterRegistry, kc: KubeConfig, a: JoinArgs): Promise<{ result: JoinResult, member: Omit<FederationMember, 'token'>, revoked?: string }> {
  const cluster = registry.get(a.name)
  if (cluster.mode !== 'proxy') {
    throw new UsageError(`cluster "${a.name}" is in ${cluster.mode} mode: a federation controller needs a proxy-mode cluster (Tower authenticates its caller token)`)
  }
  const endpoint = registry.endpoint(a.name)
  if (endpoint === undefined) throw new UsageError(`cluster "${a.name}" has no port yet: start "tower server" so it can bind one, then retry`)
  const host = a.serverHost ?? endpoint.host
  const apiEndpoint = `https://${host.includes(':') ? `[${host}]` : host}:${endpoint.port}`
  const { token, id } = await registry.issueCallerToken(a.name, { user: a.user, groups: a.groups })
  const member: FederationMember = { name: a.name, apiEndpoint, caPem: registry.ca.certPem, token, tokenId: id }
  let result: JoinResult
  try {
    result = a.target === 'kubefed'
      ? await joinKubeFed(kc, member, { namespace: a.namespace })
      : await joinKarmada(kc, member, { secretNamespace: a.namespace })
  } catch (err) {
    // Nothing stores the new token: do not leave a live credential behind.
    await revoke(registry, a.name, id)
    throw err
  }
  const revoked = result.previousTokenId !== undefined && await revoke(registry, a.name, result.previousTokenId) ? result.previousTokenId : undefined
  return { result, member: { name: a.name, apiEndpoint, caPem: member.caPem, tokenId: id }, revoked }
}

async function leave (registry: ClusterRegistry, kc: KubeConfig, a: JoinArgs): Promise<{ result: LeaveResult, revoked?: string }> {
  const result = a.target === 'kubefed'
    ? await leaveKubeFed(kc, a.name, { namespace: a.namespace })
    : await leaveKarmada(kc, a.name, { secretNamespace: a.namespace })
  // The cluster may be gone from Tower already (removed first): then so are its tokens.
  const known = registry.find(a.name) !== undefined
  const revoked = known && result.tokenId !== undefined && await revoke(registry, a.name, result.tokenId) ? result.tokenId : undefined
  return { result, revoked }
}

async function run (a: JoinArgs): Promise<void> {
  const flag = a.target === 'kubefed' ? '--kubeconfig' : '--karmada-kubeconfig'
  const kc = loadKubeconfig(a.kubeconfig, flag)
  const registry = await FileRegistry.open({ stateDir: a.stateDir, create: false })
  try {
    const what = a.target === 'kubefed' ? `KubeFedCluster ${a.namespace}/${a.name}` : `Karmada Cluster ${a.name}`
    if (a.leave) {
      const { result, revoked } = await leave(registry, kc, a)
      if (a.output === 'json') {
        console.log(JSON.stringify({ target: a.target, name: a.name, removed: result.removed, pending: result.pending === true, revokedTokenId: revoked ?? null }, null, 2))
      } else if (result.pending === true) {
        console.log(`${what} is being deleted; its finalizer is still running, so its Secret and caller token were kept. Run this again once it is gone.`)
      } else {
        console.log(result.removed ? `${what} and its Secret removed.` : `${what} did not exist.`)
        if (revoked !== undefined) console.log(`Caller token ${revoked} revoked.`)
      }
      return
    }
    const { result, member, revoked } = await join(registry, kc, a)
    if (a.output === 'json') {
      console.log(JSON.stringify({ target: a.target, name: a.name, created: result.created, apiEndpoint: member.apiEndpoint, tokenId: member.tokenId, revokedTokenId: revoked ?? null }, null, 2))
      return
    }
    console.log(`${what} ${result.created ? 'created' : 'updated'}: apiEndpoint ${member.apiEndpoint}, CA: Tower's, caller token ${member.tokenId} (user ${a.user}).`)
    if (revoked !== undefined) console.log(`The caller token it replaced (${revoked}) is revoked.`)
  } finally {
    await registry.close()
  }
}

/** Registers the command group. */
export function joinCommand (y: Argv): Argv {
  const common = <T>(c: Argv<T>, target: Target) => c
    .positional('name', { type: 'string', demandOption: true, describe: 'Cluster name (registered with "tower cluster add", proxy mode)' })
    .option('user', { type: 'string', default: `tower-${target}`, describe: `Identity of the caller token the controller uses; with --impersonate clusters the member's RBAC sees it (TOWER_USER)` })
    .option('group', { type: 'string', array: true, default: [] as string[], describe: 'Group of that identity; repeatable (TOWER_GROUP)' })
    .option('server-host', { type: 'string', describe: 'Host the apiEndpoint names [default: the server\'s --advertise-host] (TOWER_SERVER_HOST)' })
    .option('leave', { type: 'boolean', default: false, describe: 'Remove the cluster object and its Secret instead, and revoke the token they held (TOWER_LEAVE)' })
  return y.command('join', 'Join a cluster to a federation control plane (KubeFed, Karmada) through the tunnel', (c) => c
    .option('state-dir', stateDirOption)
    .option('output', outputOption)
    .command('kubefed <name>', 'Create or update the KubeFedCluster <name> and its token Secret in the host cluster', (k) => common(k, 'kubefed')
      .option('kubeconfig', { type: 'string', demandOption: true, describe: 'Kubeconfig of the host cluster where KubeFed runs (TOWER_KUBECONFIG)' })
      .option('kubefed-namespace', { type: 'string', default: DEFAULT_KUBEFED_NAMESPACE, describe: 'KubeFed\'s namespace (TOWER_KUBEFED_NAMESPACE)' }),
    (argv) => run({
      target: 'kubefed',
      name: argv.name,
      stateDir: argv['state-dir'],
      kubeconfig: argv.kubeconfig,
      namespace: argv['kubefed-namespace'],
      user: argv.user,
      groups: argv.group.map(String),
      serverHost: argv['server-host'],
      leave: argv.leave,
      output: argv.output
    }))
    .command('karmada <name>', 'Create or update the push-mode Karmada Cluster <name> and its Secret (token, caBundle)', (k) => common(k, 'karmada')
      .option('karmada-kubeconfig', { type: 'string', demandOption: true, describe: 'Kubeconfig of the Karmada apiserver (TOWER_KARMADA_KUBECONFIG)' })
      .option('secret-namespace', { type: 'string', default: DEFAULT_KARMADA_SECRET_NAMESPACE, describe: 'Namespace of the credential Secret in Karmada (TOWER_SECRET_NAMESPACE)' }),
    (argv) => run({
      target: 'karmada',
      name: argv.name,
      stateDir: argv['state-dir'],
      kubeconfig: argv['karmada-kubeconfig'],
      namespace: argv['secret-namespace'],
      user: argv.user,
      groups: argv.group.map(String),
      serverHost: argv['server-host'],
      leave: argv.leave,
      output: argv.output
    }))
    .demandCommand(1, 'name a target: tower join kubefed <name> | tower join karmada <name>'),
  () => undefined)
}
