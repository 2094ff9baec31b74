/**
 * Writing a kubeconfig for one Tower endpoint: one cluster, one user, one
 * context, all under the same name, with the context made current. PEM
 * material is embedded as base64 `*-data` fields so the file stands alone.
 */
import { Document } from 'yaml'
import { InvalidArgumentError } from '@tower/mux'
import { validateNonEmptyString } from './config.ts'
import { YAML_OPTIONS } from './kubeconfig.ts'

/** Client-certificate credentials for renderKubeconfig. */
export interface CertificateCredentials {
  /** Client certificate, PEM. */
  clientCertPem: string
  /** Its private key, PEM. */
  clientKeyPem: string
}

/** Bearer-token credentials for renderKubeconfig. */
export interface TokenCredentials {
  /** Bearer token, written inline. */
  token: string
}

/** Options of renderKubeconfig. */
export interface RenderKubeconfigOptions {
  /** Name of the cluster, user and context entries, such as `tower-prod`. */
  name: string
  /** Endpoint URL, `https://host:port` (or `http://` for a plain listener). */
  server: string
  /** CA that signed the endpoint's certificate, PEM. */
  caPem: string
  /** Name to verify the endpoint's certificate against instead of the URL's host. */
  tlsServerName?: string
  /** Default namespace of the context. */
  namespace?: string
  /** Credentials: a client certificate and key, or a bearer token. */
  user: CertificateCredentials | TokenCredentials
}

/** Base64 of a string's UTF-8 bytes. */
function b64 (s: string): string {
  return Buffer.from(s, 'utf8').toString('base64')
}

function validatePem (name: string, value: unknown, label: RegExp): asserts value is string {
  validateNonEmptyString(name, value)
  if (!label.test(value)) throw new InvalidArgumentError(`${name} is not PEM (${label.source})`)
}

/**
 * Renders a kubeconfig (`apiVersion: v1`, `kind: Config`) as YAML text.
 * Throws InvalidArgumentError naming the bad option.
 */
export function renderKubeconfig (opts: RenderKubeconfigOptions): string {
  if (typeof opts !== 'object' || opts === null) throw new InvalidArgumentError('renderKubeconfig options must be an object')
  validateNonEmptyString('name', opts.name)
  validateNonEmptyString('server', opts.server)
  let url: URL
  try {
    url = new URL(opts.server)
  } catch {
    throw new InvalidArgumentError(`server is not a URL: ${JSON.stringify(opts.server)}`)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new InvalidArgumentError(`server must be an http(s) URL, got ${JSON.stringify(opts.server)}`)
  validatePem('caPem', opts.caPem, /-----BEGIN CERTIFICATE-----/)
  if (opts.tlsServerName !== undefined) validateNonEmptyString('tlsServerName', opts.tlsServerName)
  if (opts.namespace !== undefined) validateNonEmptyString('namespace', opts.namespace)
  if (typeof opts.user !== 'object' || opts.user === null) throw new InvalidArgumentError('user must be { clientCertPem, clientKeyPem } or { token }')

  let user: Record<string, string>
  if ('token' in opts.user) {
    validateNonEmptyString('user.token', opts.user.token)
    user = { token: opts.user.token }
  } else {
    validatePem('user.clientCertPem', opts.user.clientCertPem, /-----BEGIN CERTIFICATE-----/)
    validatePem('user.clientKeyPem', opts.user.clientKeyPem, /-----BEGIN [A-Z ]*PRIVATE KEY-----/)
    user = { 'client-certificate-data': b64(opts.user.clientCertPem), 'client-key-data': b64(opts.user.clientKeyPem) }
  }

  const cluster: Record<string, string> = { server: opts.server, 'certificate-authority-data': b64(opts.caPem) }
  if (opts.tlsServerName !== undefined) cluster['tls-server-name'] = opts.tlsServerName
  const context: Record<string, string> = { cluster: opts.name, user: opts.name }
  if (opts.namespace !== undefined) context.namespace = opts.namespace

  const doc = new Document({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: opts.name, cluster }],
    users: [{ name: opts.name, user }],
    contexts: [{ name: opts.name, context }],
    'current-context': opts.name,
    preferences: {}
  }, YAML_OPTIONS)
  return doc.toString(YAML_OPTIONS)
}
