/**
 * The certificates a state directory keeps: its CA (ca.crt/ca.key) and the
 * serving certificate of every Tower port (server.crt/server.key).
 *
 * Only a brand-new state directory gets a new CA. A CA file that is missing,
 * unreadable, or whose key does not belong to its certificate is a
 * TOWER_ERR_STATE naming the file: silently making a new CA would break every
 * certificate and kubeconfig issued before.
 *
 * The serving certificate is re-issued when its SANs no longer match the
 * settings or when it expires within the renewal window.
 */
import type { Logger } from '@tower/mux'
import { createCa, verifyCaBundle, type CertificateBundle } from '@tower/pki'
import { StateError } from '../errors.ts'
import { expiryOf, issueServingCertificate, needsRenewal, servingHosts, splitHosts, type ServerCertPolicy } from './certificates.ts'
import type { ServerSettings, StateStore } from '../state-store.ts'

const DAY_MS = 24 * 60 * 60 * 1000

/** True when the directory holds neither CA file. */
export function caAbsent (store: StateStore): boolean {
  return !store.has('ca.key') && !store.has('ca.crt')
}

/** Creates the CA of a brand-new state directory. */
export function createStoredCa (store: StateStore, validityDays: number, log: Logger): void {
  const ca = createCa({ commonName: 'tower-ca', validityDays })
  store.writeText('ca.key', ca.keyPem, 0o600)
  store.writeText('ca.crt', ca.certPem, 0o644)
  log.info({ stateDir: store.dir }, 'created CA')
}

/** Reads and checks the stored CA; throws StateError naming the missing or bad file. */
export function readStoredCa (store: StateStore): CertificateBundle {
  const certPem = store.readText('ca.crt')
  const keyPem = store.readText('ca.key')
  const missing = [certPem === undefined ? 'ca.crt' : '', keyPem === undefined ? 'ca.key' : ''].filter((f) => f !== '')
  if (missing.length > 0) {
    throw new StateError(`${missing.map((f) => store.file(f)).join(' and ')} ${missing.length > 1 ? 'are' : 'is'} missing: restore ${missing.length > 1 ? 'them' : 'it'} from a backup. A new CA would invalidate every certificate and kubeconfig issued before; to start over, move the whole state directory away`)
  }
  try {
    verifyCaBundle('ca', { certPem: certPem!, keyPem: keyPem! })
  } catch (err) {
    const file = /ca\.keyPem/.test((err as Error).message) ? 'ca.key' : 'ca.crt'
    throw new StateError(`${store.file(file)} is not usable: ${(err as Error).message.replace(/ca\.keyPem/g, 'ca.key').replace(/ca\.certPem/g, 'ca.crt')}`, { cause: err })
  }
  return { certPem: certPem!, keyPem: keyPem! }
}

/** The stored serving certificate, re-issued when its SANs changed or it nears expiry. */
export function serverCertificate (store: StateStore, ca: CertificateBundle, settings: ServerSettings, policy: ServerCertPolicy, log: Logger, now = Date.now()): CertificateBundle {
  const hosts = servingHosts(settings)
  const want = JSON.stringify(splitHosts(hosts))
  const renewBy = now + policy.renewBeforeDays * DAY_MS
  const caExpiry = expiryOf(ca.certPem)
  if (caExpiry !== undefined && caExpiry < renewBy) {
    log.warn({ caExpiresAt: new Date(caExpiry).toISOString(), stateDir: store.dir }, 'the Tower CA expires soon: every certificate it signed stops working then; plan a new state directory and re-issue agents\' CA files and kubeconfigs')
  }
  const certPem = store.readText('server.crt')
  const keyPem = store.readText('server.key')
  // server.sans records exactly what was asked for, so a SAN dropped from
  // the settings also re-issues (needsRenewal alone only sees missing ones).
  if (certPem !== undefined && keyPem !== undefined && store.readText('server.sans') === want) {
    if (!needsRenewal({ certPem }, hosts, policy.renewBeforeDays, now)) return { certPem, keyPem }
    const expiry = expiryOf(certPem)
    log.info({ expiresAt: expiry === undefined ? undefined : new Date(expiry).toISOString() }, 'server certificate expires soon (or is unreadable): re-issuing it')
  }
  const cert = issueServingCertificate(ca, { hosts, validityDays: policy.validityDays })
  store.writeText('server.key', cert.keyPem, 0o600)
  store.writeText('server.crt', cert.certPem, 0o644)
  store.writeText('server.sans', want, 0o644)
  log.info({ ...splitHosts(hosts), validityDays: policy.validityDays }, 'issued server certificate')
  return cert
}
