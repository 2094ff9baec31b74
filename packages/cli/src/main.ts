/**
 * The `tower` command line. Every flag has a TOWER_* environment fallback
 * (flags > env > defaults); errors print their code and message, never a
 * stack, and exit 1. Usage errors (yargs' own, a bad flag value) carry
 * TOWER_ERR_USAGE.
 */
// First: V8's GC settings must be in place before the other modules allocate.
import './gc-tuning.ts'
import yargs, { type Argv } from 'yargs'
import { hideBin } from 'yargs/helpers'
import { agentCommand } from './commands/agent.ts'
import { clusterCommand } from './commands/cluster.ts'
import { demoCommand } from './commands/demo.ts'
import { joinCommand } from './commands/join.ts'
import { kubeconfigCommand } from './commands/kubeconfig.ts'
import { serverCommand } from './commands/server.ts'
import { UsageError } from './options.ts'

const EPILOG = `Quick start:
  tower server --advertise-host tower.example.com     # on the host side
  tower cluster add prod-eu --token-out prod-eu.token  # prints the agent command
  tower agent --server wss://tower.example.com:8443 --cluster prod-eu --token-file prod-eu.token --ca-file tower-ca.crt
  tower kubeconfig prod-eu --out prod-eu.kubeconfig && kubectl --kubeconfig prod-eu.kubeconfig get ns
Try everything in one process:  tower demo`

let cli = yargs(hideBin(process.argv))
  .scriptName('tower')
  .usage('$0 <command> [options]\n\nReverse tunnel to the kube-apiservers of private member clusters.')
  .env('TOWER')
  // Not .strict(): it also rejects TOWER_* variables meant for another
  // command (a server's env must not break `tower cluster add` run beside it).
  // Unknown commands and unknown --flags on the command line still fail.
  .strictCommands()
  .middleware(rejectUnknownFlags as never)
  .recommendCommands()
  .demandCommand(1, 'name a command')
  .epilog(EPILOG)
  .wrap(Math.min(120, process.stdout.columns || 100))
  .fail((msg, err) => {
    if (err !== undefined && err !== null) {
      console.error(`tower: [${errorCode(err)}] ${err.message}`)
    } else {
      console.error(`tower: [TOWER_ERR_USAGE] ${msg}\n(run "tower --help" or "tower <command> --help")`)
    }
    process.exit(1)
  })
for (const add of [serverCommand, agentCommand, clusterCommand, kubeconfigCommand, joinCommand, demoCommand]) cli = add(cli)

try {
  await cli.help().version('0.1.0').parseAsync()
} catch (err) {
  console.error(`tower: [${errorCode(err)}] ${(err as Error).message}`)
  process.exit(1)
}

/** The code printed with an error: its own, or TOWER_ERR_USAGE for yargs' and the commands' plain errors. */
function errorCode (err: unknown): string {
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && code !== '' ? code : 'TOWER_ERR_USAGE'
}

/** Fails on a --flag the running command does not define. */
function rejectUnknownFlags (_argv: unknown, y: Argv & { getOptions?: () => { key?: Record<string, unknown>, alias?: Record<string, string[]> } }): void {
  const known = new Set<string>(['help', 'version', '$0', '_'])
  const options = y.getOptions?.() ?? {}
  for (const key of options.key === undefined ? [] : Object.keys(options.key)) known.add(key)
  for (const list of Object.values(options.alias ?? {})) for (const a of list as string[]) known.add(a)
  for (const token of hideBin(process.argv)) {
    if (token === '--') break
    const m = /^--(?:no-)?([^=]+)/.exec(token)
    if (m !== null && !known.has(m[1]!)) throw new UsageError(`unknown option --${m[1]} (see "tower <command> --help")`)
  }
}
