/**
 * The kubeconfig format (`apiVersion: v1`, `kind: Config`) as a typed object,
 * and its parser. Only the fields Tower understands are typed; the parser
 * checks their types and names the offending field in every error, and
 * ignores fields it does not know (as kubectl does with extensions).
 *
 * YAML is read as YAML 1.1 because kubectl's reader (go-yaml v2) is 1.1:
 * `insecure-skip-tls-verify: yes` is a boolean there.
 */
import { parseDocument } from 'yaml'
import { KubeconfigInvalidError } from './errors.ts'

/** One entry of `clusters`. Field names are the kubeconfig ones in camelCase. */
export interface KubeconfigCluster {
  name: string
  /** `server`: the kube-apiserver URL, such as `https://10.0.0.1:6443`. */
  server: string
  /** `certificate-authority`: path of a PEM CA file, possibly relative to the kubeconfig's directory. */
  certificateAuthority?: string
  /** `certificate-authority-data`: base64 of PEM CA certificates; wins over the file. */
  certificateAuthorityData?: string
  /** `insecure-skip-tls-verify`. */
  insecureSkipTlsVerify?: boolean
  /** `tls-server-name`: the name the server certificate is checked against instead of the URL's host. */
  tlsServerName?: string
  /** `proxy-url`. */
  proxyUrl?: string
}

/** One entry of `users`. */
export interface KubeconfigUser {
  name: string
  /** `token`: a bearer token. */
  token?: string
  /** `tokenFile`: path of a file holding a bearer token. */
  tokenFile?: string
  /** `client-certificate`: path of a PEM client certificate. */
  clientCertificate?: string
  /** `client-certificate-data`: base64 of a PEM client certificate; wins over the file. */
  clientCertificateData?: string
  /** `client-key`: path of a PEM private key. */
  clientKey?: string
  /** `client-key-data`: base64 of a PEM private key; wins over the file. */
  clientKeyData?: string
  /** `username` for basic auth. */
  username?: string
  /** `password` for basic auth. */
  password?: string
  /** `exec`: a credential plugin; present but not supported by Tower. */
  exec?: unknown
  /** `auth-provider`: a legacy auth plugin; present but not supported by Tower. */
  authProvider?: unknown
  /** `as`: user to impersonate; parsed so that resolveContext can refuse it. */
  impersonate?: string
  /** `as-uid`: uid to impersonate; parsed so that resolveContext can refuse it. */
  impersonateUid?: string
  /** `as-groups`: groups to impersonate; parsed so that resolveContext can refuse it. An empty list is undefined. */
  impersonateGroups?: string[]
  /** `as-user-extra`: extra fields to impersonate, by key; parsed so that resolveContext can refuse it. An empty mapping is undefined. */
  impersonateUserExtra?: ReadonlyMap<string, string[]>
}

/** One entry of `contexts`. */
export interface KubeconfigContext {
  name: string
  /** Name of an entry of `clusters`. */
  cluster: string
  /** Name of an entry of `users`; undefined means no credentials. */
  user?: string
  /** Default namespace. */
  namespace?: string
}

/** A parsed kubeconfig. Missing lists are empty arrays. */
export interface Kubeconfig {
  clusters: KubeconfigCluster[]
  users: KubeconfigUser[]
  contexts: KubeconfigContext[]
  /** `current-context`; undefined when absent or empty. */
  currentContext?: string
}

/** YAML options shared by every reader and writer of kubeconfigs in this package. */
export const YAML_OPTIONS = { version: '1.1', lineWidth: 0 } as const

type Obj = Record<string, unknown>

function isObj (v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function optString (o: Obj, key: string, path: string): string | undefined {
  const v = o[key]
  if (v === undefined || v === null || v === '') return undefined
  if (typeof v !== 'string') throw new KubeconfigInvalidError(`${path}.${key}`, `must be a string, got ${typeof v}`)
  return v
}

function reqString (o: Obj, key: string, path: string): string {
  const v = optString(o, key, path)
  if (v === undefined) throw new KubeconfigInvalidError(`${path}.${key}`, 'is required')
  return v
}

function optBool (o: Obj, key: string, path: string): boolean | undefined {
  const v = o[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'boolean') throw new KubeconfigInvalidError(`${path}.${key}`, `must be a boolean, got ${typeof v}`)
  return v
}

function optStringList (o: Obj, key: string, path: string): string[] | undefined {
  const v = o[key]
  if (v === undefined || v === null) return undefined
  if (!isStringList(v)) throw new KubeconfigInvalidError(`${path}.${key}`, 'must be a list of strings')
  return v.length === 0 ? undefined : v
}

// A map, not a plain object: the keys come from the file.
function optStringListMap (o: Obj, key: string, path: string): Map<string, string[]> | undefined {
  const v = o[key]
  if (v === undefined || v === null) return undefined
  if (!isObj(v)) throw new KubeconfigInvalidError(`${path}.${key}`, 'must be a mapping')
  const out = new Map<string, string[]>()
  for (const [k, list] of Object.entries(v)) {
    if (!isStringList(list)) throw new KubeconfigInvalidError(`${path}.${key}`, `${JSON.stringify(k)} must be a list of strings`)
    out.set(k, list)
  }
  return out.size === 0 ? undefined : out
}

function isStringList (v: unknown): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === 'string')
}

// Drops undefined members so results compare cleanly with deepEqual.
function compact<T extends object> (o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T
}

/** Reads a named list (`clusters`, `users`, `contexts`): each entry is `{ name, <key>: {...} }`, names unique. */
function namedList<T> (root: Obj, list: string, key: string, read: (body: Obj, path: string, name: string) => T): T[] {
  const v = root[list]
  if (v === undefined || v === null) return []
  if (!Array.isArray(v)) throw new KubeconfigInvalidError(list, 'must be a list')
  const seen = new Set<string>()
  return v.map((entry, i) => {
    const path = `${list}[${i}]`
    if (!isObj(entry)) throw new KubeconfigInvalidError(path, 'must be a mapping')
    const name = reqString(entry, 'name', path)
    if (seen.has(name)) throw new KubeconfigInvalidError(`${path}.name`, `duplicate name ${JSON.stringify(name)}`)
    seen.add(name)
    const body = entry[key] ?? {}
    if (!isObj(body)) throw new KubeconfigInvalidError(`${path}.${key}`, 'must be a mapping')
    return read(body, `${path}.${key}`, name)
  })
}

/** Validates a plain object (YAML already parsed) as a kubeconfig. */
export function kubeconfigFromObject (root: unknown): Kubeconfig {
  if (!isObj(root)) throw new KubeconfigInvalidError('', 'document must be a mapping')
  const kind = optString(root, 'kind', '')
  if (kind !== undefined && kind !== 'Config') throw new KubeconfigInvalidError('kind', `must be "Config", got ${JSON.stringify(kind)}`)
  const apiVersion = optString(root, 'apiVersion', '')
  if (apiVersion !== undefined && apiVersion !== 'v1') throw new KubeconfigInvalidError('apiVersion', `must be "v1", got ${JSON.stringify(apiVersion)}`)

  const clusters = namedList(root, 'clusters', 'cluster', (c, p, name) => compact<KubeconfigCluster>({
    name,
    server: reqString(c, 'server', p),
    certificateAuthority: optString(c, 'certificate-authority', p),
    certificateAuthorityData: optString(c, 'certificate-authority-data', p),
    insecureSkipTlsVerify: optBool(c, 'insecure-skip-tls-verify', p),
    tlsServerName: optString(c, 'tls-server-name', p),
    proxyUrl: optString(c, 'proxy-url', p)
  }))
  const users = namedList(root, 'users', 'user', (u, p, name) => compact<KubeconfigUser>({
    name,
    token: optString(u, 'token', p),
    tokenFile: optString(u, 'tokenFile', p),
    clientCertificate: optString(u, 'client-certificate', p),
    clientCertificateData: optString(u, 'client-certificate-data', p),
    clientKey: optString(u, 'client-key', p),
    clientKeyData: optString(u, 'client-key-data', p),
    username: optString(u, 'username', p),
    password: optString(u, 'password', p),
    exec: u.exec ?? undefined,
    authProvider: u['auth-provider'] ?? undefined,
    impersonate: optString(u, 'as', p),
    impersonateUid: optString(u, 'as-uid', p),
    impersonateGroups: optStringList(u, 'as-groups', p),
    impersonateUserExtra: optStringListMap(u, 'as-user-extra', p)
  }))
  const contexts = namedList(root, 'contexts', 'context', (c, p, name) => compact<KubeconfigContext>({
    name,
    cluster: reqString(c, 'cluster', p),
    user: optString(c, 'user', p),
    namespace: optString(c, 'namespace', p)
  }))
  return compact<Kubeconfig>({ clusters, users, contexts, currentContext: optString(root, 'current-context', '') })
}

/**
 * Parses kubeconfig YAML text. Throws KubeconfigInvalidError (with `field`)
 * on YAML syntax errors, wrong types, missing required fields (`name`,
 * `cluster.server`, `context.cluster`) and duplicate names. Does not check
 * that contexts point at existing entries; resolveContext does.
 */
export function parseKubeconfig (text: string): Kubeconfig {
  if (typeof text !== 'string') throw new KubeconfigInvalidError('', 'text must be a string')
  const doc = parseDocument(text, YAML_OPTIONS)
  if (doc.errors.length > 0) throw new KubeconfigInvalidError('', `not valid YAML: ${doc.errors[0].message}`, { cause: doc.errors[0] })
  return kubeconfigFromObject(doc.toJS())
}

/** Indexes of a context and the entries it refers to, from selectContext. */
export interface SelectedContext {
  contextName: string
  /** Index in `contexts`. */
  contextIndex: number
  /** Index in `clusters` of the context's cluster. */
  clusterIndex: number
  /** Index in `users` of the context's user; undefined when the context names no user. */
  userIndex?: number
}

/**
 * Finds `contextName` (default: current-context) and the cluster and user it
 * names. Throws KubeconfigInvalidError naming the field that points nowhere.
 */
export function selectContext (cfg: Kubeconfig, contextName?: string): SelectedContext {
  const name = contextName ?? cfg.currentContext
  if (name === undefined) throw new KubeconfigInvalidError('current-context', 'is not set and no context was given')
  const contextIndex = cfg.contexts.findIndex((c) => c.name === name)
  if (contextIndex === -1) throw new KubeconfigInvalidError(contextName === undefined ? 'current-context' : 'contexts', `no context named ${JSON.stringify(name)}`)
  const ctx = cfg.contexts[contextIndex]
  const clusterIndex = cfg.clusters.findIndex((c) => c.name === ctx.cluster)
  if (clusterIndex === -1) throw new KubeconfigInvalidError(`contexts[${contextIndex}].context.cluster`, `no cluster named ${JSON.stringify(ctx.cluster)}`)
  if (ctx.user === undefined) return { contextName: name, contextIndex, clusterIndex }
  const userIndex = cfg.users.findIndex((u) => u.name === ctx.user)
  if (userIndex === -1) throw new KubeconfigInvalidError(`contexts[${contextIndex}].context.user`, `no user named ${JSON.stringify(ctx.user)}`)
  return { contextName: name, contextIndex, clusterIndex, userIndex }
}
