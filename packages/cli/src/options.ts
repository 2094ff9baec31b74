/**
 * Options shared by several commands. Every flag also reads TOWER_<FLAG>
 * from the environment (yargs `.env('TOWER')`); the describe text says so.
 */
import os from 'node:os'
import path from 'node:path'
import type { Options } from 'yargs'
import { TowerError } from '@tower/server'
import { LEVELS } from './logger.ts'

/** A command line that cannot be run as written: bad flag value, missing argument. Code TOWER_ERR_USAGE. */
export class UsageError extends TowerError {
  constructor (message: string) {
    super(message, 'TOWER_ERR_USAGE')
  }
}

/** `--state-dir`: where the registry lives. */
export const stateDirOption = {
  type: 'string',
  default: path.join(os.homedir(), '.tower'),
  defaultDescription: '~/.tower',
  describe: 'State directory: CA, clusters, ports, token hashes; only "tower server" and "tower cluster add" create it (TOWER_STATE_DIR)'
} satisfies Options

/** `--log-level`. */
export const logLevelOption = {
  type: 'string',
  choices: LEVELS,
  default: 'info',
  describe: 'Log level; logs are JSON lines on stdout (TOWER_LOG_LEVEL)'
} satisfies Options

/** `--output`. */
export const outputOption = {
  type: 'string',
  choices: ['text', 'json'],
  default: 'text',
  describe: 'Output format (TOWER_OUTPUT)'
} satisfies Options

/** Splits `host:port`, accepting `[v6]:port`. */
export function parseHostPort (text: string, flag: string): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text)
  if (m === null) throw new UsageError(`${flag} must be host:port, got "${text}"`)
  const port = Number(m[3])
  if (port > 65535) throw new UsageError(`${flag} port ${port} is out of range`)
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port }
}

const DURATION_UNITS_MS = new Map([['ms', 1], ['s', 1000], ['m', 60_000], ['h', 3_600_000], ['d', 86_400_000]])

/** Parses a duration such as `90s`, `10m`, `2h`, `1d` or `500ms` into milliseconds; throws UsageError naming `flag`. */
export function parseDuration (text: string, flag: string): number {
  const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(String(text).trim())
  if (m === null) throw new UsageError(`${flag} must be a duration such as 30s, 10m, 2h or 1d, got "${String(text)}"`)
  return Number(m[1]) * DURATION_UNITS_MS.get(m[2]!)!
}

/** True when `--flag` (or `--flag=…`) was typed on the command line itself, not taken from TOWER_* or a default. */
export function givenOnCommandLine (flag: string, argv: string[]): boolean {
  for (const token of argv) {
    if (token === '--') return false
    if (token === `--${flag}` || token.startsWith(`--${flag}=`)) return true
  }
  return false
}
