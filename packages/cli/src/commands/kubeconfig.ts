/**
 * `tower kubeconfig <name>`: a kubeconfig whose server is the cluster's
 * Tower port; `tower kubeconfig revoke <name> --serial <hex>` refuses one
 * client certificate from then on. Both work on either registry
 * (--registry); neither creates a state directory.
 */
import fs from 'node:fs'
import path from 'node:path'
import type { Argv } from 'yargs'
import { issueKubeconfigCredential } from '@tower/server'
import { UsageError } from '../options.ts'
import { withRegistry, withRegistryOptions } from '../registry-options.ts'

/** Registers the command. */
export function kubeconfigCommand (y: Argv): Argv {
  // `[name]`, not `<name>`: a required positional would be demanded before
  // yargs looks for the `revoke` subcommand.
  return y.command('kubeconfig [name]', 'Print a kubeconfig for a cluster\'s Tower endpoint (or: kubeconfig revoke <name> --serial <hex>)', (c) => withRegistryOptions(c)
    .positional('name', { type: 'string', describe: 'Cluster name' })
    .command('revoke <cluster>', 'Revoke one client certificate of a cluster by its serial; other certificates keep working', (r) => r
      .positional('cluster', { type: 'string', demandOption: true, describe: 'Cluster name' })
      .option('serial', { type: 'string', demandOption: true, describe: 'Certificate serial in hex, as printed when it was issued (or by: openssl x509 -noout -serial)' }),
    async (argv) => withRegistry(argv, {}, async (registry) => {
      const added = await registry.revokeCertificate(argv.cluster, argv.serial)
      console.log(added ? `certificate ${argv.serial} of cluster "${argv.cluster}" revoked` : `certificate ${argv.serial} of cluster "${argv.cluster}" was already revoked`)
    }))
    .option('token', { type: 'boolean', default: false, describe: 'Authenticate with a new caller token (for KubeFed) instead of a client certificate' })
    .option('user', { type: 'string', describe: 'Identity in the credential (certificate CN); reaches the member as Impersonate-User with --impersonate clusters [default: tower-admin]' })
    .option('group', { type: 'string', array: true, describe: 'Group of that identity (certificate O); repeatable' })
    .option('validity-days', { type: 'number', default: 365, describe: 'Client certificate lifetime in days' })
    .option('server-host', { type: 'string', describe: 'Host the kubeconfig points at [default: the server\'s --advertise-host; with --registry kubernetes, the Service mc-<name>.<namespace>.svc]' })
    .option('server-port', { type: 'number', describe: 'Port the kubeconfig points at [default: the cluster\'s port; with --registry kubernetes, the Service port 6443]. With --registry kubernetes and --server-host naming the server itself (no Service in between), give the cluster\'s port (kubectl get cluster NAME)' })
    .option('from', { type: 'string', describe: 'Passthrough clusters: the member\'s own kubeconfig to rewrite to the tunnel endpoint' })
    .option('context', { type: 'string', describe: 'With --from: the context to use [default: current-context]' })
    .option('out', { type: 'string', describe: 'Write to this file (mode 0600) instead of stdout' }),
  async (argv) => {
    if (argv.name === undefined) throw new UsageError('name a cluster: tower kubeconfig <name>')
    const name = argv.name
    await withRegistry(argv, {}, async (registry) => {
      const issued = await issueKubeconfigCredential(registry, {
        cluster: name,
        serverHost: argv['server-host'],
        serverPort: argv['server-port'],
        user: argv.user,
        groups: argv.group,
        token: argv.token,
        validityDays: argv['validity-days'],
        from: argv.from === undefined ? undefined : { text: fs.readFileSync(argv.from, 'utf8'), context: argv.context, baseDir: path.dirname(path.resolve(argv.from)) }
      })
      if (argv.out !== undefined) fs.writeFileSync(argv.out, issued.yaml, { mode: 0o600 })
      else process.stdout.write(issued.yaml)
      // stderr, so `> file` still gets only the kubeconfig.
      if (issued.serial !== undefined) console.error(`client certificate serial ${issued.serial} (revoke with: tower kubeconfig revoke ${name} --serial ${issued.serial})`)
      if (issued.tokenId !== undefined) console.error(`caller token id ${issued.tokenId} (revoke with: tower cluster token ${name} --revoke-caller ${issued.tokenId})`)
    })
  })
}
