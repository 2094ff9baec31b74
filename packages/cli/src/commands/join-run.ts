/**
 * What `tower join` runs (see join.ts): loaded only when a join runs, since
 * it brings the federation code and @kubernetes/client-node, which every
 * other command (tower server, tower agent) would otherwise carry in memory.
 */
import { KubeConfig } from '@kubernetes/client-node'
import {
  DEFAULT_KARMADA_SECRET_NAMESPACE, DEFAULT_KUBEFED_NAMESPACE, joinKarmada, joinKubeFed, leaveKarmada, leaveKubeFed,
  type FederationMember, type JoinResult, type LeaveResult
} from '@tower/controller'
import { FileRegistry, type ClusterRegistry } from '@tower/server'
import { UsageError } from '../options.ts'

/** The federation control plane a join targets. */
export type Target = 'kubefed' | 'karmada'

/** The parsed flags of `tower join kubefed|karmada`. */
export interface JoinArgs {
  target: Target
  name: string
  stateDir: string
  kubeconfig: string
  /** KubeFed's namespace or Karmada's Secret namespace; absent: the controller's default. */
  namespace?: string
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

async function join (registry: ClusterRegistry, kc: KubeConfig, a: JoinArgs & { namespace: string }): Promise<{ result: JoinResult, member: Omit<FederationMember, 'token'>, revoked?: string }> {
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

async function leave (registry: ClusterRegistry, kc: KubeConfig, a: JoinArgs & { namespace: string }): Promise<{ result: LeaveResult, revoked?: string }> {
  const result = a.target === 'kubefed'
    ? await leaveKubeFed(kc, a.name, { namespace: a.namespace })
    : await leaveKarmada(kc, a.name, { secretNamespace: a.namespace })
  // The cluster may be gone from Tower already (removed first): then so are its tokens.
  const known = registry.find(a.name) !== undefined
  const revoked = known && result.tokenId !== undefined && await revoke(registry, a.name, result.tokenId) ? result.tokenId : undefined
  return { result, revoked }
}

/** Runs the join (or, with `leave`, the leave) and prints its outcome. */
export async function runJoin (args: JoinArgs): Promise<void> {
  const a: JoinArgs & { namespace: string } = { ...args, namespace: args.namespace ?? (args.target === 'kubefed' ? DEFAULT_KUBEFED_NAMESPACE : DEFAULT_KARMADA_SECRET_NAMESPACE) }
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
