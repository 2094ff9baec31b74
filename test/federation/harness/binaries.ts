/**
 * Where test/e2e/tools/federation.sh put KubeFed, Karmada and the Kubernetes controllers. Versions come
 * from the wrapper modules' go.mod files, the same source the build script keys its cache folders on.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { cacheRoot, wrapperVersion } from '../../e2e/harness/binaries.ts'

/** Paths of the federation binaries and release files. */
export interface FederationBinaries {
  kubefed: { version: string, controllerManager: string, coreCrds: string, typesCrds: string, typeConfigs: string }
  karmada: { version: string, aggregatedApiserver: string, controllerManager: string, scheduler: string, webhook: string, crds: string }
  /** kube-controller-manager and kube-scheduler (Deployments get ReplicaSets, pods and a status). */
  kube: { version: string, controllerManager: string, scheduler: string }
}

/**
 * The binaries, or throws naming what is missing and the command that builds it.
 * @param need which tools must be there
 */
export function federationBinaries (need: Array<'kubefed' | 'karmada' | 'kube-controllers'>): FederationBinaries {
  const root = cacheRoot()
  const kv = wrapperVersion('kubefed', 'sigs.k8s.io/kubefed')
  const av = wrapperVersion('karmada', 'github.com/karmada-io/karmada')
  const cv = wrapperVersion('kube-controllers', 'k8s.io/kubernetes')
  const kd = join(root, `kubefed-${kv}`)
  const ad = join(root, `karmada-${av}`)
  const cd = join(root, `kube-controllers-${cv}`)
  const dirs = new Map([['kubefed', kd], ['karmada', ad], ['kube-controllers', cd]])
  const missing = need.filter((t) => !existsSync(join(dirs.get(t)!, '.complete')))
  if (missing.length > 0) {
    throw new Error(`federation binaries not built: ${missing.join(', ')}. Run \`bash test/e2e/tools/build.sh && bash test/e2e/tools/federation.sh\` (cold: ~10 minutes on 2 cores).`)
  }
  return {
    kubefed: {
      version: kv,
      controllerManager: join(kd, 'controller-manager'),
      coreCrds: join(kd, 'charts', 'core-crds.yaml'),
      typesCrds: join(kd, 'charts', 'types-crds.yaml'),
      typeConfigs: join(kd, 'charts', 'federatedtypeconfig.yaml')
    },
    karmada: {
      version: av,
      aggregatedApiserver: join(ad, 'karmada-aggregated-apiserver'),
      controllerManager: join(ad, 'karmada-controller-manager'),
      scheduler: join(ad, 'karmada-scheduler'),
      webhook: join(ad, 'karmada-webhook'),
      crds: join(ad, 'crds')
    },
    kube: { version: cv, controllerManager: join(cd, 'kube-controller-manager'), scheduler: join(cd, 'kube-scheduler') }
  }
}
