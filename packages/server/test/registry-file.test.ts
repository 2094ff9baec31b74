/**
 * The registry contract (registry-contract.ts) for the file backend: a
 * fresh state directory per test.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { FileRegistry } from '@tower/server'
import { registryContract } from './registry-contract.ts'

registryContract('file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-contract-'))
  const registry = await FileRegistry.open({ stateDir: path.join(dir, 'state'), server: { advertiseHost: '127.0.0.1', portRange: '7600-7699' } })
  return {
    registry,
    cleanup: async () => {
      await registry.close()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
})
