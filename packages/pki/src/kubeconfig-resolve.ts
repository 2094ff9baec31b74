/**
 * Turning a parsed kubeconfig plus a context name into the concrete
 * connection settings: server URL, CA PEM, credentials. `*-data` fields are
 * base64-decoded; file paths are read through a caller-supplied `readFile`
 * (this package never touches the file system), relative to `baseDir` as
 * kubectl resolves them relative to the kubeconfig's directory.
 */
import { isAbsolute, resolve as resolvePath } from 'node:path'
import { InvalidArgumentError } from '@tower/mux'
import { KubeconfigInvalidError, KubeconfigUnsupportedError } from './errors.ts'
import { selectContext, type Kubeconfig } from './kubeconfig.ts'

/** Options of resolveContext. */
export interface ResolveOptions {
  /** Context to use; default `current-context`. */
  contextName?: string
  /** Directory relative file paths are resolved against (the kubeconfig file's directory). */
  baseDir?: string
  /** Reads a file, such as `(p) => fs.readFileSync(p)`. Required only when the context refers to files. */
  readFile?: (path: string) => string | Uint8Array
}

/** The cluster half of a resolved context. */
export interface ResolvedCluster {
  /** Name of the `clusters` entry. */
  name: string
  /** kube-apiserver URL. */
  server: string
  /** CA certificates, PEM; undefined means the system roots. */
  caPem?: string
  /** Skip server certificate verification (kubeconfig `insecure-skip-tls-verify`). */
  insecureSkipTlsVerify: boolean
  /** Name to verify the server certificate against instead of the URL's host. */
  tlsServerName?: string
  /** HTTP(S) proxy URL for reaching the server. */
  proxyUrl?: string
}

/** The user half of a resolved context; every field is optional (no fields = anonymous). */
export interface ResolvedUser {
  /** Name of the `users` entry; undefined when the context names no user. */
  name?: string
  /** Inline bearer token. */
  token?: string
  /** Absolute path of a token file. Not read here: the caller re-reads it when it changes. */
  tokenFile?: string
  /** Client certificate, PEM. Always paired with clientKeyPem. */
  clientCertPem?: string
  /** Client private key, PEM. */
  clientKeyPem?: string
  /** Basic-auth user name. */
  username?: string
  /** Basic-auth password. */
  password?: string
}

/** Result of resolveContext. */
export interface ResolvedContext {
  /** The context that was resolved. */
  contextName: string
  /** The context's default namespace. */
  namespace?: string
  cluster: ResolvedCluster
  user: ResolvedUser
}

function compact<T extends object> (o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T
}

/**
 * Resolves `contextName` (default: current-context) of a parsed kubeconfig into
 * connection settings. Throws KubeconfigInvalidError naming the field when
 * the context, its cluster or user is missing, base64 is not PEM, a file
 * cannot be read, or a client certificate has no key (or vice versa);
 * KubeconfigUnsupportedError for `exec`, `auth-provider` and impersonating
 * (`as`, `as-uid`, `as-groups`, `as-user-extra`) users;
 * InvalidArgumentError when a file is needed and `readFile` or `baseDir` is missing.
 */
export function resolveContext (cfg: Kubeconfig, opts: ResolveOptions = {}): ResolvedContext {
  const { contextName, contextIndex, clusterIndex, userIndex } = selectContext(cfg, opts.contextName)
  const ctx = cfg.contexts[contextIndex]
  const kc = cfg.clusters[clusterIndex]
  const kp = `clusters[${clusterIndex}].cluster`

  if (!URL.canParse(kc.server)) throw new KubeconfigInvalidError(`${kp}.server`, `is not a URL: ${JSON.stringify(kc.server)}`)
  const cluster = compact<ResolvedCluster>({
    name: kc.name,
    server: kc.server,
    caPem: material(opts, `${kp}.certificate-authority`, kc.certificateAuthorityData, kc.certificateAuthority, 'CERTIFICATE'),
    insecureSkipTlsVerify: kc.insecureSkipTlsVerify === true,
    tlsServerName: kc.tlsServerName,
    proxyUrl: kc.proxyUrl
  })

  let user: ResolvedUser = {}
  if (userIndex !== undefined) {
    const ku = cfg.users[userIndex]
    const up = `users[${userIndex}].user`
    if (ku.exec !== undefined) throw new KubeconfigUnsupportedError(`${up}.exec`, 'exec credential plugins are not supported; use a token, a token file or a client certificate')
    if (ku.authProvider !== undefined) throw new KubeconfigUnsupportedError(`${up}.auth-provider`, 'auth providers are not supported; use a token, a token file or a client certificate')
    const impersonation = ku.impersonate !== undefined
      ? 'as'
      : ku.impersonateUid !== undefined ? 'as-uid' : ku.impersonateGroups !== undefined ? 'as-groups' : ku.impersonateUserExtra !== undefined ? 'as-user-extra' : undefined
    // Refused, never dropped: without it the user's own, broader identity would act.
    if (impersonation !== undefined) {
      throw new KubeconfigUnsupportedError(`${up}.${impersonation}`, 'impersonation (as, as-uid, as-groups, as-user-extra) is refused: ignoring it would act with the user\'s own, broader identity; use a user that holds only the rights it needs')
    }
    const clientCertPem = material(opts, `${up}.client-certificate`, ku.clientCertificateData, ku.clientCertificate, 'CERTIFICATE')
    const clientKeyPem = material(opts, `${up}.client-key`, ku.clientKeyData, ku.clientKey, 'PRIVATE KEY')
    if ((clientCertPem === undefined) !== (clientKeyPem === undefined)) {
      const missing = clientCertPem === undefined ? 'client-certificate' : 'client-key'
      throw new KubeconfigInvalidError(`${up}.${missing}`, 'a client certificate needs both client-certificate(-data) and client-key(-data)')
    }
    user = compact<ResolvedUser>({
      name: ku.name,
      token: ku.token,
      tokenFile: ku.tokenFile === undefined ? undefined : absolutePath(opts, `${up}.tokenFile`, ku.tokenFile),
      clientCertPem,
      clientKeyPem,
      username: ku.username,
      password: ku.password
    })
  }
  return compact<ResolvedContext>({ contextName, namespace: ctx.namespace, cluster, user })
}

/** Resolves `path` against opts.baseDir; throws naming `field` when it is relative and there is no baseDir. */
function absolutePath (opts: ResolveOptions, field: string, path: string): string {
  if (isAbsolute(path)) return path
  if (opts.baseDir === undefined) throw new InvalidArgumentError(`baseDir is required to resolve the relative path in ${field}: ${JSON.stringify(path)}`)
  return resolvePath(opts.baseDir, path)
}

/**
 * PEM material from `<field>-data` (base64, wins) or the file `<field>`.
 * `pemLabel` is checked as a suffix of the BEGIN line so that `PRIVATE KEY`
 * accepts RSA, EC and PKCS#8 keys.
 */
function material (opts: ResolveOptions, field: string, data: string | undefined, file: string | undefined, pemLabel: string): string | undefined {
  let pem: string
  let where: string
  if (data !== undefined) {
    where = `${field}-data`
    const compacted = data.replace(/\s+/g, '')
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compacted)) throw new KubeconfigInvalidError(where, 'is not base64')
    pem = Buffer.from(compacted, 'base64').toString('utf8')
  } else if (file !== undefined) {
    where = field
    const path = absolutePath(opts, field, file)
    if (opts.readFile === undefined) throw new InvalidArgumentError(`readFile is required to read ${field}: ${JSON.stringify(path)}`)
    try {
      const content = opts.readFile(path)
      pem = typeof content === 'string' ? content : Buffer.from(content.buffer, content.byteOffset, content.byteLength).toString('utf8')
    } catch (err) {
      throw new KubeconfigInvalidError(field, `cannot read ${JSON.stringify(path)}: ${(err as Error).message}`, { cause: err })
    }
  } else {
    return undefined
  }
  if (!new RegExp(`-----BEGIN [A-Z ]*${pemLabel}-----`).test(pem)) {
    throw new KubeconfigInvalidError(where, `does not contain a PEM "${pemLabel}" block`)
  }
  return pem
}
