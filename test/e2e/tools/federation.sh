#!/usr/bin/env bash
# Builds the federation controllers the federation tests run (KubeFed's controller-manager and Karmada's
# four control-plane binaries) from Go modules into the same cache as build.sh, one folder per version:
#
#   ${TOWER_E2E_CACHE:-$HOME/.cache/tower-e2e}/kubefed-<version>/controller-manager   (+ charts/)
#                                             /karmada-<version>/{karmada-aggregated-apiserver,
#                                               karmada-controller-manager,karmada-scheduler,karmada-webhook}
#                                               (+ crds/, deploy/)
#
# Same rules as build.sh: a wrapper module per tool (kubefed/, karmada/) pins the version with a `tool`
# directive and a committed go.sum; -mod=readonly; a .complete marker; a progress line every 30 s; a flock
# on the cache. Each tool's release files the harness needs (KubeFed's charts, Karmada's CRDs) are copied
# next to the binaries so a warm run never needs the module cache or the proxy.
#
# KubeFed v0.10.0 pins json-iterator 1.1.11 with reflect2 v1.0.1, which crashes on Go >= 1.18
# (reflect.mapiternext); the wrapper requires reflect2 v1.0.2, the first release that works.
# Karmada's four binaries share most packages: one `go build` invocation compiles them once.
#
# Usage: bash test/e2e/tools/federation.sh [kubefed] [karmada] [kube-controllers]    (no argument = all)
# Env:   TOWER_E2E_CACHE  cache root (default ~/.cache/tower-e2e)
#        TOWER_E2E_BUILD_LOG  full go build -v output (default $TOWER_E2E_CACHE/build.log)
set -euo pipefail

TOOL_TAG=e2e-federation
# HERE, CACHE, LOG, say, version_of, logged_build, control_plane_setup; the Go environment (see lib.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
control_plane_setup

# run_build NAME DIR OUT [go build flags and packages...]: go build -o OUT (a file, or a directory for
# several packages).
run_build() {
  local name=$1 dir=$2 out=$3
  shift 3
  logged_build "$name" "$dir" -o "$out" "$@" || exit 1
}

build_kubefed() {
  local v dest src tmp
  v=$(version_of "$HERE/kubefed/go.mod" sigs.k8s.io/kubefed)
  dest=$CACHE/kubefed-$v
  if [[ -f $dest/.complete && -x $dest/controller-manager ]]; then say "kubefed $v: cached ($dest)"; return; fi
  say "kubefed $v: building"
  mkdir -p "$dest"
  tmp=$dest/.tmp
  rm -rf "$tmp"; mkdir -p "$tmp"
  run_build "kubefed $v" kubefed "$tmp/controller-manager" \
    -ldflags "-s -w -X sigs.k8s.io/kubefed/pkg/version.version=$v -X sigs.k8s.io/kubefed/pkg/version.gitTreeState=clean" \
    sigs.k8s.io/kubefed/cmd/controller-manager
  mv -f "$tmp/controller-manager" "$dest/controller-manager"
  rm -rf "$tmp"
  # CRDs and FederatedTypeConfigs of this release (the chart's plain-YAML parts; no helm needed).
  src=$(cd "$HERE/kubefed" && go list -m -f '{{.Dir}}' sigs.k8s.io/kubefed)
  rm -rf "$dest/charts"; mkdir -p "$dest/charts"
  cp -f "$src/charts/kubefed/charts/controllermanager/crds/crds.yaml" "$dest/charts/core-crds.yaml"
  cp -f "$src/charts/kubefed/crds/crds.yaml" "$dest/charts/types-crds.yaml"
  cp -f "$src/charts/kubefed/templates/federatedtypeconfig.yaml" "$dest/charts/federatedtypeconfig.yaml"
  chmod -R u+w "$dest/charts"
  "$dest/controller-manager" --version 2>&1 | head -n 1 || true
  touch "$dest/.complete"
}

# karmada_files DEST: the release files the harness feeds Karmada (CRDs, the webhook configuration and the
# APIService of the aggregated apiserver), copied from the module so a warm run needs no module cache.
karmada_files() {
  local dest=$1 src
  src=$(cd "$HERE/karmada" && go list -m -f '{{.Dir}}' github.com/karmada-io/karmada)
  rm -rf "$dest/crds" "$dest/deploy"; mkdir -p "$dest/crds" "$dest/deploy"
  cp -rf "$src/charts/karmada/_crds/bases/." "$dest/crds/"
  cp -f "$src/artifacts/deploy/webhook-configuration.yaml" "$src/artifacts/deploy/karmada-aggregated-apiserver-apiservice.yaml" "$dest/deploy/"
  chmod -R u+w "$dest/crds" "$dest/deploy"
}

build_karmada() {
  local v dest tmp b
  v=$(version_of "$HERE/karmada/go.mod" github.com/karmada-io/karmada)
  dest=$CACHE/karmada-$v
  if [[ -f $dest/.complete && -x $dest/karmada-webhook ]]; then
    # Caches made before the release files were copied get them now (seconds, no build).
    if [[ ! -f $dest/deploy/webhook-configuration.yaml ]]; then karmada_files "$dest"; fi
    say "karmada $v: cached ($dest)"; return
  fi
  say "karmada $v: building 4 binaries in one go build"
  mkdir -p "$dest"
  tmp=$dest/.tmp
  rm -rf "$tmp"; mkdir -p "$tmp"
  local p=github.com/karmada-io/karmada
  run_build "karmada $v" karmada "$tmp" \
    -ldflags "-s -w -X $p/pkg/version.gitVersion=$v -X $p/pkg/version.gitTreeState=clean" \
    "$p/cmd/aggregated-apiserver" "$p/cmd/controller-manager" "$p/cmd/scheduler" "$p/cmd/webhook"
  for b in aggregated-apiserver controller-manager scheduler webhook; do
    mv -f "$tmp/$b" "$dest/karmada-$b"
  done
  rm -rf "$tmp"
  karmada_files "$dest"
  "$dest/karmada-controller-manager" version 2>&1 | head -n 1 || true
  touch "$dest/.complete"
}

# Deployments only get ReplicaSets, pods on the kwok nodes and a status with kube-controller-manager and
# kube-scheduler. Their own wrapper (kube-controllers/: the same staging replaces as kube/, but a go.sum
# that covers the kubelet and volume packages kube-controller-manager links); the packages shared with
# kube-apiserver are already in Go's build cache after build.sh.
build_kube_controllers() {
  local v minor dest tmp b
  v=$(version_of "$HERE/kube-controllers/go.mod" k8s.io/kubernetes)
  minor=${v#v1.}; minor=${minor%%.*}
  dest=$CACHE/kube-controllers-$v
  if [[ -f $dest/.complete && -x $dest/kube-scheduler ]]; then say "kube-controller-manager, kube-scheduler $v: cached ($dest)"; return; fi
  say "kube-controller-manager, kube-scheduler $v: building in one go build"
  mkdir -p "$dest"
  tmp=$dest/.tmp
  rm -rf "$tmp"; mkdir -p "$tmp"
  run_build "kube-controllers $v" kube-controllers "$tmp" \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
  for b in kube-controller-manager kube-scheduler; do mv -f "$tmp/$b" "$dest/$b"; done
  rm -rf "$tmp"
  "$dest/kube-scheduler" --version
  touch "$dest/.complete"
}

tools=("$@")
if [[ ${#tools[@]} -eq 0 ]]; then tools=(kubefed karmada kube-controllers); fi
total=$SECONDS
for t in "${tools[@]}"; do
  case $t in
    kubefed) build_kubefed ;;
    karmada) build_karmada ;;
    kube-controllers) build_kube_controllers ;;
    *) say "ERROR: unknown tool '$t' (kubefed, karmada, kube-controllers)"; exit 2 ;;
  esac
done
say "done in $((SECONDS - total))s"
