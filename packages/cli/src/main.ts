/**
 * The `tower` command line. Every flag has a TOWER_* environment fallback
 * (flags > env > defaults); errors print their code and message, never a
 * stack, and exit 1.
 */
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { agentCommand } from './commands/agent.ts'
import { clusterCommand } from './commands/cluster.ts'
import { demoCommand } from './commands/demo.ts'
import { kubeconfigCommand } from './commands/kubeconfig.ts'
import { serverCommand } from './commands/server.ts'

const EPILOG = `Quick start:
  tower server --advertise-host tower.example.com     # on the host side
  tower cluster add prod-eu                           # prints the agent command
  tower agent --server wss://tower.example.com:8443 --cluster prod-eu --token … --ca-file tower-ca.crt
  tower kubeconfig prod-eu > prod-eu.kubeconfig && kubectl --kubeconfig prod-eu.kubeconfig get ns
Try everything in one process:  tower demo`

let cli = yargs(hideBin(process.argv))
  .scriptName('tower')
  .usage('$0 <command> [options]\n\nReverse tunnel to the kube-apiservers of private member clusters.')
  .env('TOWER')
  .strict()
  .recommendCommands()
  .demandCommand(1, 'name a command')
  .epilog(EPILOG)
  .wrap(Math.min(120, process.stdout.columns || 100))
  .fail((msg, err) => {
    if (err !== undefined && err !== null) {
      const code = (err as { code?: string }).code
      console.error(`tower: ${code !== undefined ? `[${code}] ` : ''}${err.message}`)
    } else {
      console.error(`tower: ${msg}\n(run "tower --help" or "tower <command> --help")`)
    }
    process.exit(1)
  })
for (const add of [serverCommand, agentCommand, clusterCommand, kubeconfigCommand, demoCommand]) cli = add(cli)

await cli.help().version('0.1.0').parseAsync()
