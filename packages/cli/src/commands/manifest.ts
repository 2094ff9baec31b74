/**
 * `tower cluster manifest NAME`: everything the member cluster applies to
 * run an agent (`… | kubectl apply -f -` there), with the join token in the
 * Secret's data and nowhere else: never on stderr, never in a log line.
 *
 * Where the token comes from depends on the registry. The kubernetes one
 * keeps it in Secret tower-join-NAME and reads it from there. The file one
 * keeps only its hash, so the token comes from the file saved at `cluster
 * add --token-out` (--token-file), or --rotate issues a new one, which
 * disconnects agents holding the old one (said on stderr).
 */
import fs from 'node:fs'
import type { Argv, CommandModule } from 'yargs'
import { DEFAULT_CALLER_USER, type ClusterRecord, type ClusterRegistry } from '@tower/server'
import { agentManifest, isSystemName, renderDocuments } from '../agent-manifest.ts'
import { parseDuration, UsageError } from '../options.ts'
import { withRegistry, type RegistryArgs } from '../registry-options.ts'

/** Largest token file read, in bytes (a token is about 60). */
const MAX_TOKEN_FILE_BYTES = 4096

/** The agent endpoint URL agents dial, from the settings and a running server's status. */
export async function defaultAgentUrl (registry: ClusterRegistry): Promise<string> {
  const host = registry.settings.advertiseHost
  const status = await registry.readStatus()
  const port = typeof status?.agentPort === 'number' ? status.agentPort : registry.settings.listenPort ?? 8443
  return `wss://${host.includes(':') ? `[${host}]` : host}:${port}`
}

/** Reads a join token from a file: one line, no whitespace inside; UsageError naming the file otherwise. */
export function readTokenFile (file: string): string {
  let text: string
  try {
    const fd = fs.openSync(file, 'r')
    try {
      const buf = Buffer.alloc(MAX_TOKEN_FILE_BYTES + 1)
      const n = fs.readSync(fd, buf, 0, buf.length, 0)
      if (n > MAX_TOKEN_FILE_BYTES) throw new UsageError(`--token-file ${file} is larger than ${MAX_TOKEN_FILE_BYTES} bytes: not a join token`)
      text = buf.subarray(0, n).toString('utf8')
    } finally {
      fs.closeSync(fd)
    }
  } catch (err) {
    if (err instanceof UsageError) throw err
    throw new UsageError(`cannot read --token-file ${file}: ${(err as Error).message}`)
  }
  const token = text.trim()
  if (token === '' || /\s/.test(token)) throw new UsageError(`--token-file ${file} does not hold one token on one line`)
  return token
}

/** The users and groups the agent may impersonate for a cluster: tower-admin and every caller token's identity. */
function impersonation (registry: ClusterRegistry, cluster: ClusterRecord): { users: string[], groups: string[] } {
  if (!cluster.impersonate) return { users: [DEFAULT_CALLER_USER], groups: [] }
  const users = new Set([DEFAULT_CALLER_USER])
  const groups = new Set<string>()
  for (const t of registry.callerTokens(cluster.name)) {
    users.add(t.user)
    for (const g of t.groups) groups.add(g)
  }
  return { users: [...users], groups: [...groups] }
}

/** Arguments of the command. */
export interface ManifestArgs extends RegistryArgs {
  name: string
  server?: string
  'token-file'?: string
  rotate: boolean
  grace?: string
  image?: string
}

/** Runs `tower cluster manifest`: resolves with the YAML to print; notes go to `note` (stderr). */
export async function clusterManifest (argv: ManifestArgs, note: (line: string) => void): Promise<string> {
  if (argv.rotate && argv['token-file'] !== undefined) throw new UsageError('--token-file and --rotate exclude each other')
  if (!argv.rotate && argv.grace !== undefined) throw new UsageError('--grace applies to --rotate only')
  if (argv.server !== undefined && !/^wss?:\/\/[^/\s]+$/.test(argv.server)) throw new UsageError(`--server must be wss://host:port, got "${argv.server}"`)
  const graceMs = argv.grace === undefined ? 0 : parseDuration(argv.grace, '--grace')
  const fileToken = argv['token-file'] === undefined ? undefined : readTokenFile(argv['token-file'])
  return await withRegistry(argv, {}, async (registry) => {
    const cluster = registry.get(argv.name)
    let token: string | undefined
    if (fileToken !== undefined) {
      // Catch a stale file here rather than as an agent that cannot join.
      if (!registry.authenticateAgent(cluster.name, fileToken).ok) {
        throw new UsageError(`the token in ${argv['token-file']} is not a valid join token of cluster "${cluster.name}" (rotated since?); pass --rotate for a new one`)
      }
      token = fileToken
    } else if (argv.rotate) {
      token = await registry.rotateAgentToken(cluster.name, { graceMs })
      note(`note: issued a new join token for "${cluster.name}"; agents using the old one are disconnected ${graceMs === 0 ? 'now' : `in ${argv.grace}`}. Apply this manifest to update them.`)
    } else {
      token = await registry.agentToken(cluster.name)
      if (token === undefined) {
        throw new UsageError(registry.kind === 'file'
          ? `the file registry keeps only a hash of the join token of "${cluster.name}": pass --token-file FILE (saved by "tower cluster add --token-out") or --rotate to issue a new one`
          : `cluster "${cluster.name}" has no join Secret yet (the controller has not reconciled it): wait, or check its Initialized condition`)
      }
    }
    const { users, groups } = impersonation(registry, cluster)
    const dropped = [...users, ...groups].filter(isSystemName)
    if (dropped.length > 0) note(`note: left out of the agent's impersonation rights (system: names are never granted): ${dropped.join(', ')}`)
    if (!cluster.impersonate) {
      note(`note: "${cluster.name}" is not an --impersonate cluster, so requests act as the agent's ServiceAccount, which this RBAC lets read nothing; grant it what callers need (e.g. deploy/agent/rbac-admin.yaml)`)
    }
    return renderDocuments(agentManifest({
      cluster: cluster.name,
      server: argv.server ?? await defaultAgentUrl(registry),
      token,
      caPem: registry.ca.certPem,
      image: argv.image,
      impersonateUsers: users,
      impersonateGroups: groups
    }))
  })
}

/** `manifest <name>`, a subcommand of `cluster` (which supplies the registry flags). */
export const manifestCommand: CommandModule<RegistryArgs, ManifestArgs> = {
  command: 'manifest <name>',
  describe: 'Print what the member cluster applies to run an agent: Namespace, ServiceAccount, RBAC, Secret (token, CA), Deployment; pipe it to kubectl apply -f -',
  builder: (a) => a
    .positional('name', { type: 'string', demandOption: true, describe: 'Cluster name' })
    .option('server', { type: 'string', describe: 'Agent endpoint the agent dials, wss://host:port [default: the server\'s advertise host and agent port] (TOWER_SERVER)' })
    .option('token-file', { type: 'string', describe: 'File with the current join token (as saved by "cluster add --token-out"); the file registry keeps only a hash (TOWER_TOKEN_FILE)' })
    .option('rotate', { type: 'boolean', default: false, describe: 'Issue a new join token for the manifest; agents using the old one are disconnected (after --grace) (TOWER_ROTATE)' })
    .option('grace', { type: 'string', describe: 'With --rotate: the old token keeps working this long, e.g. 10m (TOWER_GRACE)' })
    .option('image', { type: 'string', describe: 'Agent container image [default: ghcr.io/tower-dev/tower:0.1.0] (TOWER_IMAGE)' }) as unknown as Argv<ManifestArgs>,
  handler: async (argv) => {
    const yaml = await clusterManifest(argv, (line) => console.error(line))
    process.stdout.write(yaml)
  }
}
