/**
 * Options shared by several commands. Every flag also reads TOWER_<FLAG>
 * from the environment (yargs `.env('TOWER')`); the describe text says so.
 */
import os from 'node:os'
import path from 'node:path'
import type { Options } from 'yargs'
import { LEVELS } from './logger.ts'

/** `--state-dir`: where the registry lives. */
export const stateDirOption = {
  type: 'string',
  default: path.join(os.homedir(), '.tower'),
  defaultDescription: '~/.tower',
  describe: 'State directory: CA, clusters, ports, token hashes (TOWER_STATE_DIR)'
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
  if (m === null) throw new Error(`${flag} must be host:port, got "${text}"`)
  const port = Number(m[3])
  if (port > 65535) throw new Error(`${flag} port ${port} is out of range`)
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port }
}
