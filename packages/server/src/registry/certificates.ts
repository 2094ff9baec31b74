/**
 * The serving certificate of every Tower port, without any storage: which
 * names it must carry, issuing it from the CA, and deciding when a held one
 * must be replaced. The file backend caches the result in its state
 * directory (file-certificates.ts); the kubernetes backend keeps it in memory
 * and re-issues it from the shared CA when its set of names grows.
 */
import { X509Certificate } from 'node:crypto'
import { isIP } from 'node:net'
import { issueServerCert, type CertificateBundle } from '@tower/pki'
import type { ServerSettings } from '../state-store.ts'

/** Default lifetime of the serving certificate, in days. */
export const DEFAULT_SERVER_CERT_VALIDITY_DAYS = 825

/** Default renewal window: a serving certificate expiring sooner than this is re-issued, in days. */
export const DEFAULT_CERT_RENEW_BEFORE_DAYS = 30

const DAY_MS = 24 * 60 * 60 * 1000

/** How long serving certificates live and when they are renewed. */
export interface ServerCertPolicy {
  /** Lifetime of a newly issued serving certificate, in days. */
  validityDays: number
  /** Re-issue when the certificate expires within this many days. */
  renewBeforeDays: number
}

/** The names the serving certificate carries: the advertise host, the SANs, `extra`, localhost and 127.0.0.1; no duplicates. */
export function servingHosts (settings: Pick<ServerSettings, 'advertiseHost' | 'sans'>, extra: Iterable<string> = []): string[] {
  return [...new Set([settings.advertiseHost, ...settings.sans, ...extra, 'localhost', '127.0.0.1'])]
}

/** Splits host names from IP addresses, as the certificate's SAN types want them. */
export function splitHosts (hosts: readonly string[]): { dnsNames: string[], ipAddresses: string[] } {
  const unique = [...new Set(hosts)]
  return { dnsNames: unique.filter((n) => isIP(n) === 0), ipAddresses: unique.filter((n) => isIP(n) !== 0) }
}

/** Issues a serving certificate for `hosts` (names and IPs), valid `validityDays` days. */
export function issueServingCertificate (ca: CertificateBundle, opts: { hosts: readonly string[], validityDays: number }): CertificateBundle {
  return issueServerCert(ca, { commonName: 'tower-server', ...splitHosts(opts.hosts), validityDays: opts.validityDays })
}

/**
 * True when `cert` must be replaced: it is unreadable, lacks one of `hosts`
 * among its SANs, or expires within `renewBeforeDays` days of `now` (ms).
 */
export function needsRenewal (cert: Pick<CertificateBundle, 'certPem'>, hosts: readonly string[], renewBeforeDays: number, now = Date.now()): boolean {
  let x509: X509Certificate
  try {
    x509 = new X509Certificate(cert.certPem)
  } catch {
    return true
  }
  if (x509.validToDate.getTime() <= now + renewBeforeDays * DAY_MS) return true
  const sans = new Set((x509.subjectAltName ?? '').split(', ').map((s) => s.replace(/^(DNS|IP Address):/, '')))
  return hosts.some((h) => !sans.has(h))
}

/** Expiry of a certificate in ms since epoch, or undefined when it cannot be read. */
export function expiryOf (pem: string): number | undefined {
  try {
    return new X509Certificate(pem).validToDate.getTime()
  } catch {
    return undefined
  }
}
