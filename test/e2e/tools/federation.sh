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

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${TOWER_E2E_CACHE:-$HOME/.cache/tower-e2e}
mkdir -p "$CACHE"
LOG=${TOWER_E2E_BUILD_LOG:-$CACHE/build.log}
: >>"$LOG"

export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"

say() { printf '[e2e-federation %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if ! command -v go >/dev/null 2>&1; then
  say "ERROR: go not found in PATH (need Go 1.26.x)"; exit 1
fi
say "$(go version); cache $CACHE; log $LOG"

# The same lock as build.sh: two Go builds of this size at once would exhaust 2 cores and the memory.
exec 9>"$CACHE/.build.lock"
if ! flock -n 9; then
  say "another build holds $CACHE/.build.lock; waiting for it"
  flock 9
fi

# version_of DIR MODULE -> the version DIR/go.mod requires for MODULE.
version_of() {
  local v
  v=$(awk -v m="$2" '$1 == m { print $2; exit }' "$HERE/$1/go.mod")
  if [[ -z "$v" ]]; then say "ERROR: $2 not required in $HERE/$1/go.mod"; exit 1; fi
  printf '%s' "$v"
}

# run_build NAME DIR OUT [go build flags and packages...]: go build -v -o OUT (a file, or a directory for
# several packages), with a progress line every 30 s.
run_build() {
  local name=$1 dir=$2 out=$3
  shift 3
  local start=$SECONDS mark
  mark=$(wc -l <"$LOG")
  (cd "$HERE/$dir" && go build -p 2 -v -trimpath -o "$out" "$@") >>"$LOG" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name: still building, $(($(wc -l <"$LOG") - mark)) packages so far, $((SECONDS - start))s"
    fi
  done
  if ! wait "$pid"; then
    say "ERROR: $name build failed after $((SECONDS - start))s; last lines of $LOG:"
    tail -n 30 "$LOG" >&2
    exit 1
  fi
  say "$name: built in $((SECONDS - start))s"
}

build_kubefed() {
  local v dest src tmp
  v=$(version_of kubefed sigs.k8s.io/kubefed)
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
  v=$(version_of karmada github.com/karmada-io/karmada)
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
  v=$(version_of kube-controllers k8s.io/kubernetes)
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
