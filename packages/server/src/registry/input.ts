/**
 * Validation of what the CLI hands the registry, before anything is written.
 * Messages name the command-line flag an operator typed.
 */
import { InvalidArgumentError } from '@tower/mux'
import { isClusterName, normalizeSerial } from '@tower/pki'
import { parsePortRange } from './ports.ts'
import type { ClusterMode, ServerSettings } from '../state-store.ts'

/** Options of ClusterRegistry.add. */
export interface AddOptions {
  /** How the cluster's port carries traffic; default proxy. */
  mode?: ClusterMode
  /** Forward the caller identity as Impersonate-* (proxy mode only). */
  impersonate?: boolean
  /** A fixed port (1-65535) instead of one from the range. */
  port?: number
}

/** Checks ClusterRegistry.add's input; returns the mode and impersonate flag to store. */
export function checkAddOptions (name: unknown, opts: AddOptions): { mode: ClusterMode, impersonate: boolean } {
  if (!isClusterName(name)) {
    throw new InvalidArgumentError(`cluster name ${JSON.stringify(name)} must be a DNS label: 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit`)
  }
  const mode = opts.mode ?? 'proxy'
  if (mode !== 'proxy' && mode !== 'passthrough') throw new InvalidArgumentError(`--mode must be proxy or passthrough, got ${JSON.stringify(mode)}`)
  if (opts.impersonate !== undefined && typeof opts.impersonate !== 'boolean') throw new InvalidArgumentError('--impersonate must be true or false')
  if (opts.impersonate === true && mode !== 'proxy') throw new InvalidArgumentError('--impersonate needs --mode proxy: passthrough cannot see the request')
  if (opts.port !== undefined && !isPort(opts.port, 1)) throw new InvalidArgumentError(`--port must be an integer in 1-65535, got ${String(opts.port)}`)
  return { mode, impersonate: opts.impersonate === true }
}

/** Checks settings given to FileRegistry.open; returns them. */
export function checkSettings (patch: Partial<ServerSettings>): Partial<ServerSettings> {
  if (patch.portRange !== undefined) {
    if (typeof patch.portRange !== 'string') throw new InvalidArgumentError('--port-range must be text such as 6000-6999 or 0')
    parsePortRange(patch.portRange)
  }
  if (patch.advertiseHost !== undefined && (typeof patch.advertiseHost !== 'string' || patch.advertiseHost.trim() === '')) {
    throw new InvalidArgumentError('--advertise-host must be a non-empty host name or IP')
  }
  if (patch.sans !== undefined && (!Array.isArray(patch.sans) || !patch.sans.every((s) => typeof s === 'string' && s !== ''))) {
    throw new InvalidArgumentError('--san must be non-empty host names or IPs')
  }
  if (patch.listenPort !== undefined && !isPort(patch.listenPort, 0)) throw new InvalidArgumentError(`--listen port must be an integer in 0-65535, got ${String(patch.listenPort)}`)
  return patch
}

/** Longest rotation grace accepted, in milliseconds (30 days). */
export const MAX_ROTATION_GRACE_MS = 30 * 24 * 60 * 60 * 1000

/** Checks a rotation grace in milliseconds (0 to 30 days); returns it, 0 when absent. */
export function checkGraceMs (graceMs: unknown): number {
  const g = graceMs ?? 0
  if (typeof g !== 'number' || !Number.isSafeInteger(g) || g < 0 || g > MAX_ROTATION_GRACE_MS) {
    throw new InvalidArgumentError(`--grace must be a duration from 0 to 30 days, got ${String(g)} ms`)
  }
  return g
}

/** Checks a certificate serial to revoke; returns it normalised (lowercase hex, no leading zeros or colons). */
export function checkSerial (serial: unknown): string {
  const hex = typeof serial === 'string' ? normalizeSerial(serial) : undefined
  if (hex === undefined) throw new InvalidArgumentError(`--serial must be a certificate serial in hex (1-40 digits, ':' allowed), got ${JSON.stringify(serial)}`)
  return hex
}

function isPort (v: unknown, min: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= 65535
}
