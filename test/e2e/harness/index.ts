// The e2e harness: a real control plane (etcd, host and member kube-apiservers, kwok), kubectl helpers,
// network namespaces. See test/e2e/tools/README.md.
export { binaries, cacheRoot, MissingBinariesError, type Binaries } from './binaries.ts'
export {
  startControlPlane,
  type ApiServer,
  type ControlPlane,
  type ControlPlaneOptions,
  type EtcdServer,
  type KwokInstance
} from './control-plane.ts'
export {
  appendPodLog,
  configureKwokStreaming,
  createFakeNodeAndPod,
  KWOK_NODE_ANNOTATION,
  type FakePod,
  type KwokPortForward,
  type KwokStreamingOptions
} from './kwok.ts'
export {
  KUBECTL,
  kubectl,
  kubectlOk,
  captureStdout,
  portForward,
  SPDY_ENV,
  startKubectl,
  writeKubeconfig,
  type CapturedOutput,
  type KubectlOptions,
  type KubectlResult
} from './kubectl.ts'
export { canConnect, createNetns, listHarnessNetns, netnsSupport, type Netns } from './netns.ts'
export { probeFreePort, probeFreePorts, withPortRetry } from './ports.ts'
export { createCa, type CertPair, type TestCa } from './pki.ts'
export { readyEndpoints, startSliceBalancer, type SliceBalancer, type SliceBalancerOptions, type SliceBalancerStats, type SliceEndpoint } from './slice-balancer.ts'
export { descendants, makeTempDir, processesMentioning, registerCleanup, startProcess, waitFor, type ManagedProcess } from './processes.ts'
