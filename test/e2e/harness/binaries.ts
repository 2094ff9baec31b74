/**
 * Where test/e2e/tools/build.sh put the control-plane binaries.
 *
 * The versions are read from the wrapper modules' go.mod files, the same single source of truth the build
 * script keys its cache folders on, so a version bump there can never leave the harness running a stale
 * binary from the cache.
 */
import { existsSync, readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'

const toolsDir = join(import.meta.dirname, '..', 'tools')

/** Paths of the e2e binaries and their versions, as built by test/e2e/tools/build.sh. */
export interface Binaries {
  /** etcd server binary. */
  etcd: string
  /** kube-apiserver binary. */
  kubeApiserver: string
  /** kwok controller binary (the fake kubelet). */
  kwok: string
  /** Folder holding kwok's stage files (node-initialize.yaml, pod-ready.yaml, ...) for that release. */
  kwokStages: string
  /** Folder holding kwok's CRDs for that release (unused by the harness's static config, kept for tests that want CRs). */
  kwokCrds: string
  /** Versions, e.g. { etcd: 'v3.6.16', kubeApiserver: 'v1.36.3', kwok: 'v0.8.0' }. */
  versions: { etcd: string, kubeApiserver: string, kwok: string }
}

/** Thrown when a binary is missing from the cache; its message says how to build it. */
export class MissingBinariesError extends Error {
  override name = 'MissingBinariesError'
}

/** The cache root: $TOWER_E2E_CACHE, or ~/.cache/tower-e2e (the same default as build.sh). */
export function cacheRoot (): string {
  return process.env.TOWER_E2E_CACHE ?? join(homedir(), '.cache', 'tower-e2e')
}

/** The version the wrapper module in test/e2e/tools/<dir>/go.mod requires for `module`. */
export function wrapperVersion (dir: string, module: string): string {
  const gomod = readFileSync(join(toolsDir, dir, 'go.mod'), 'utf8')
  for (const line of gomod.split('\n')) {
    const [name, version] = line.trim().split(/\s+/)
    if (name === module && version !== undefined) return version
  }
  throw new Error(`${module} is not required in ${join(toolsDir, dir, 'go.mod')}`)
}

/**
 * Paths of etcd, kube-apiserver and kwok in the cache.
 * @throws MissingBinariesError naming what is missing and the command that builds it.
 */
export function binaries (): Binaries {
  const versions = {
    etcd: wrapperVersion('etcd', 'go.etcd.io/etcd/server/v3'),
    kubeApiserver: wrapperVersion('kube', 'k8s.io/kubernetes'),
    kwok: wrapperVersion('kwok', 'sigs.k8s.io/kwok')
  }
  const root = cacheRoot()
  const dirs = {
    etcd: join(root, `etcd-${versions.etcd}`),
    kubeApiserver: join(root, `kube-apiserver-${versions.kubeApiserver}`),
    kwok: join(root, `kwok-${versions.kwok}`)
  }
  const files = { etcd: 'etcd', kubeApiserver: 'kube-apiserver', kwok: 'kwok' }
  const missing = (Object.keys(dirs) as Array<keyof typeof dirs>)
    .filter((tool) => !existsSync(join(dirs[tool], '.complete')) || !existsSync(join(dirs[tool], files[tool])))
    .map((tool) => `${tool} (${dirs[tool]})`)
  if (missing.length > 0) {
    throw new MissingBinariesError(
      `e2e binaries not built: ${missing.join(', ')}. Run \`bash test/e2e/tools/build.sh\` ` +
      '(cold: about 10 minutes on 2 cores; later runs take a second).')
  }
  return {
    etcd: join(dirs.etcd, files.etcd),
    kubeApiserver: join(dirs.kubeApiserver, files.kubeApiserver),
    kwok: join(dirs.kwok, files.kwok),
    kwokStages: join(dirs.kwok, 'stages'),
    kwokCrds: join(dirs.kwok, 'crds'),
    versions
  }
}
