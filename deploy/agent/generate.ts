// Rewrites deploy/agent/rbac.yaml and agent.yaml from packages/cli/src/agent-manifest.ts, the one source
// of what `tower cluster manifest` prints. Run after changing that module:
//   node --experimental-strip-types deploy/agent/generate.ts
// (packages/cli/test/agent-manifest.test.ts fails while the files differ.)
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { deployAgentFiles } from '../../packages/cli/src/agent-manifest.ts'

for (const [name, text] of deployAgentFiles()) {
  writeFileSync(join(import.meta.dirname, name), text)
  process.stdout.write(`wrote deploy/agent/${name}\n`)
}
