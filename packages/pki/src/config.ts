/**
 * Defaults for certificate issuing, next to the validation of the options
 * that override them. Every validator throws `InvalidArgumentError` naming
 * the option.
 */
import { InvalidArgumentError } from '@tower/mux'
import { isIP } from 'node:net'

/** RSA modulus size in bits when `keyBits` is not given. */
export const DEFAULT_KEY_BITS = 2048

/** Smallest RSA modulus accepted, in bits; Go and OpenSSL refuse less. */
export const MIN_KEY_BITS = 2048

/** Largest RSA modulus accepted, in bits; beyond this generation takes minutes. */
export const MAX_KEY_BITS = 8192

/**
 * How far before "now" a certificate's validity starts, in milliseconds. Covers
 * clock skew between the machine that issues and the machines that verify.
 */
export const CLOCK_SKEW_MS = 5 * 60 * 1000

/** Longest validity accepted, in days (100 years). */
export const MAX_VALIDITY_DAYS = 36500

/**
 * THE cluster-name rule of Tower, used by the registry, the agent endpoint,
 * the agent's options and the `tower://cluster/<name>` SAN URI: a DNS label
 * (RFC 1123), as Kubernetes object names are: lowercase letters, digits and
 * `-`, starting and ending with a letter or digit, at most 63 characters.
 * Nothing here needs escaping in a URI, a header, a file name or node's SAN
 * string, and no such name is a property of `Object.prototype`.
 */
const CLUSTER_NAME = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/

/** Longest cluster name accepted, in characters. */
export const MAX_CLUSTER_NAME_LENGTH = 63

/** Throws unless `value` is a non-empty string. */
export function validateNonEmptyString (name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidArgumentError(`${name} must be a non-empty string`)
  }
}

/** Throws unless `value` is a whole number of days in 1..MAX_VALIDITY_DAYS. */
export function validateValidityDays (name: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_VALIDITY_DAYS) {
    throw new InvalidArgumentError(`${name} must be an integer number of days in 1..${MAX_VALIDITY_DAYS}, got ${String(value)}`)
  }
}

/** Returns `value` or the default, throwing unless it is a multiple of 256 in MIN_KEY_BITS..MAX_KEY_BITS. */
export function resolveKeyBits (name: string, value: unknown): number {
  if (value === undefined) return DEFAULT_KEY_BITS
  if (typeof value !== 'number' || !Number.isInteger(value) || value < MIN_KEY_BITS || value > MAX_KEY_BITS || value % 256 !== 0) {
    throw new InvalidArgumentError(`${name} must be a multiple of 256 in ${MIN_KEY_BITS}..${MAX_KEY_BITS}, got ${String(value)}`)
  }
  return value
}

/** Throws unless `value` is a valid Tower cluster name (see CLUSTER_NAME). */
export function validateClusterName (name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || !CLUSTER_NAME.test(value)) {
    throw new InvalidArgumentError(`${name} must be a DNS label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit, got ${JSON.stringify(value)}`)
  }
}

/** True when `value` is a valid Tower cluster name (see CLUSTER_NAME). Never throws, whatever `value` is. */
export function isClusterName (value: unknown): value is string {
  return typeof value === 'string' && CLUSTER_NAME.test(value)
}

/** A cluster uid: 8-64 lowercase letters, digits or '-'. */
const CLUSTER_UID = /^[a-z0-9-]{8,64}$/

/** True when `value` is a valid cluster uid (see CLUSTER_UID). Never throws. */
export function isClusterUid (value: unknown): value is string {
  return typeof value === 'string' && CLUSTER_UID.test(value)
}

/** Throws unless `value` is an array of non-empty strings; names the bad element. */
export function validateStringArray (name: string, value: unknown): asserts value is string[] {
  if (!Array.isArray(value)) throw new InvalidArgumentError(`${name} must be an array of strings`)
  value.forEach((v, i) => validateNonEmptyString(`${name}[${i}]`, v))
}

/** Throws unless every element of `value` is an IPv4 or IPv6 address that node:net accepts. */
export function validateIpAddresses (name: string, value: unknown): asserts value is string[] {
  validateStringArray(name, value)
  value.forEach((ip, i) => {
    if (isIP(ip) === 0) throw new InvalidArgumentError(`${name}[${i}] is not an IP address: ${JSON.stringify(ip)}`)
  })
}

/** Throws unless every element of `value` looks like a DNS name (optionally a leading `*.` wildcard). */
export function validateDnsNames (name: string, value: unknown): asserts value is string[] {
  validateStringArray(name, value)
  value.forEach((dns, i) => {
    // Deliberately loose (allows '_' and uppercase) but refuses what can never match a hostname.
    if (dns.length > 253 || !/^(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$/.test(dns)) {
      throw new InvalidArgumentError(`${name}[${i}] is not a DNS name: ${JSON.stringify(dns)}`)
    }
  })
}
