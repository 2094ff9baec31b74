/**
 * A minimal kubeconfig reader: the context's cluster (server, CA, TLS server
 * name, insecure flag) and user (token, token file, client certificate, basic
 * auth). `*-data` fields are base64; file paths are relative to the
 * kubeconfig's directory, as kubectl resolves them.
 *
 * Exec plugins and auth providers are refused with a clear error: the agent
 * runs unattended and must not spawn commands named by a config file.
 */
import { readFileSync } from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import { parse } from 'yaml'
import { KubeconfigError } from './errors.ts'

/** What the agent needs from a kubeconfig. */
export interface KubeconfigTarget {
  /** The apiserver URL. */
  server: string
  /** CA bundle (PEM), if the kubeconfig names one; otherwise the system roots apply. */
  caPem?: string
  /** `insecure-skip-tls-verify`. */
  insecureSkipVerify: boolean
  /** `tls-server-name`. */
  tlsServerName?: string
  /** Static bearer token. */
  token?: string
  /** Bearer token file (absolute path). */
  tokenFile?: string
  /** Client certificate (PEM). */
  certPem?: string
  /** Client key (PEM). */
  keyPem?: string
  /** Basic auth. */
  username?: string
  /** Basic auth. */
  password?: string
  /** Things the kubeconfig asks for that the agent ignores (e.g. `proxy-url`), for a warning. */
  ignored: string[]
}

type Obj = Record<string, unknown>

/** Reads `path` and resolves `context` (default: current-context). Throws {@link KubeconfigError}. */
export function loadKubeconfig (path: string, context?: string): KubeconfigTarget {
  let doc: unknown
  try {
    doc = parse(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new KubeconfigError(`cannot read kubeconfig ${path}: ${(err as Error).message}`, { cause: err })
  }
  if (!isObj(doc)) throw new KubeconfigError(`kubeconfig ${path} is not a YAML mapping`)
  const dir = dirname(resolve(path))

  const ctxName = context ?? str(doc['current-context'])
  if (ctxName === undefined || ctxName === '') throw new KubeconfigError(`kubeconfig ${path} has no current-context; pass a context`)
  const ctx = named(doc.contexts, ctxName, 'context', path)
  const clusterName = str(ctx.cluster)
  if (clusterName === undefined) throw new KubeconfigError(`context ${ctxName} in ${path} names no cluster`)
  const cluster = named(doc.clusters, clusterName, 'cluster', path)
  const userName = str(ctx.user)
  const user = userName !== undefined && userName !== '' ? named(doc.users, userName, 'user', path) : {}

  const server = str(cluster.server)
  if (server === undefined || server === '') throw new KubeconfigError(`cluster ${clusterName} in ${path} has no server`)

  if (user.exec !== undefined) throw new KubeconfigError(`user ${userName} in ${path} uses an exec plugin, which the agent does not run; use a token or a client certificate`)
  if (user['auth-provider'] !== undefined) throw new KubeconfigError(`user ${userName} in ${path} uses an auth-provider, which the agent does not support; use a token or a client certificate`)

  const ignored: string[] = []
  if (cluster['proxy-url'] !== undefined) ignored.push('proxy-url')
  if (user.as !== undefined || user['as-groups'] !== undefined) ignored.push('as / as-groups (impersonation)')

  const target: KubeconfigTarget = {
    server,
    insecureSkipVerify: cluster['insecure-skip-tls-verify'] === true,
    ignored
  }
  const ca = pem(cluster, 'certificate-authority', dir, path)
  if (ca !== undefined) target.caPem = ca
  const tlsServerName = str(cluster['tls-server-name'])
  if (tlsServerName !== undefined) target.tlsServerName = tlsServerName
  const token = str(user.token)
  if (token !== undefined && token !== '') target.token = token
  const tokenFile = str(user.tokenFile)
  if (tokenFile !== undefined && tokenFile !== '' && target.token === undefined) target.tokenFile = relative(dir, tokenFile)
  const cert = pem(user, 'client-certificate', dir, path)
  const key = pem(user, 'client-key', dir, path)
  if ((cert === undefined) !== (key === undefined)) throw new KubeconfigError(`user ${userName} in ${path} has a client certificate without a key, or a key without a certificate`)
  if (cert !== undefined && key !== undefined) {
    target.certPem = cert
    target.keyPem = key
  }
  const username = str(user.username)
  const password = str(user.password)
  if (username !== undefined && password !== undefined) {
    target.username = username
    target.password = password
  }
  return target
}

function named (list: unknown, name: string, what: string, path: string): Obj {
  if (Array.isArray(list)) {
    for (const item of list) {
      if (isObj(item) && item.name === name) {
        const body = item[what]
        if (!isObj(body)) throw new KubeconfigError(`${what} ${name} in ${path} has no ${what} section`)
        return body
      }
    }
  }
  throw new KubeconfigError(`${what} ${JSON.stringify(name)} not found in ${path}`)
}

// `<field>-data` (base64) wins over `<field>` (a file path), as in client-go.
function pem (section: Obj, field: string, dir: string, path: string): string | undefined {
  const data = str(section[`${field}-data`])
  if (data !== undefined && data !== '') return Buffer.from(data, 'base64').toString('utf8')
  const file = str(section[field])
  if (file === undefined || file === '') return undefined
  try {
    return readFileSync(relative(dir, file), 'utf8')
  } catch (err) {
    throw new KubeconfigError(`cannot read ${field} ${file} named in ${path}: ${(err as Error).message}`, { cause: err })
  }
}

function relative (dir: string, file: string): string {
  return isAbsolute(file) ? file : resolve(dir, file)
}

function str (v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined
}

function isObj (v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}
