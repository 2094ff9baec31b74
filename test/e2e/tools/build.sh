#!/usr/bin/env bash
# Builds the control-plane binaries the end-to-end tests run (etcd, kube-apiserver, kwok) from Go
# modules into a cache folder OUTSIDE the repo, one folder per tool and version:
#
#   ${TOWER_E2E_CACHE:-$HOME/.cache/tower-e2e}/<tool>-<version>/<binary>
#
# Each tool has its own wrapper module next to this script (kube/, etcd/, kwok/): its go.mod pins the
# version (and, for kube, replaces every staging module with its published twin) and its go.sum makes the
# build reproducible. One module per tool, because a shared one would let Go's version selection move
# kube-apiserver's etcd client to the etcd server's version. The version in the cache path is read from
# the wrapper's go.mod, so bumping a version there is all it takes to rebuild.
#
# A tool whose folder already holds a finished build (marker file .complete) is skipped, so a warm run
# takes seconds. Tools are built one after another with -p 2: the machines have 2 cores, and the
# kube-apiserver build alone wants several GB of memory.
#
# Usage: bash test/e2e/tools/build.sh [etcd] [kube-apiserver] [kwok]    (no argument = all three)
# Env:   TOWER_E2E_CACHE  cache root (default ~/.cache/tower-e2e)
#        TOWER_E2E_BUILD_LOG  full go build -v output (default $TOWER_E2E_CACHE/build.log)
set -euo pipefail

TOOL_TAG=e2e-tools
# HERE, CACHE, LOG, say, version_of, logged_build, control_plane_setup; the Go environment (see lib.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
control_plane_setup

# run_build NAME DIR OUT PKG [go build flags...]: PKG built into OUT.tmp, then an atomic rename.
run_build() {
  local name=$1 dir=$2 out=$3 pkg=$4
  shift 4
  if ! logged_build "$name" "$dir" "$@" -o "$out.tmp" "$pkg"; then rm -f "$out.tmp"; exit 1; fi
  mv -f "$out.tmp" "$out"
  say "$name: -> $out"
}

build_etcd() {
  local v dest
  v=$(version_of "$HERE/etcd/go.mod" go.etcd.io/etcd/server/v3)
  dest=$CACHE/etcd-$v
  if [[ -f $dest/.complete && -x $dest/etcd ]]; then say "etcd $v: cached ($dest)"; return; fi
  say "etcd $v: building"
  mkdir -p "$dest"
  run_build "etcd $v" etcd "$dest/etcd" go.etcd.io/etcd/server/v3 -ldflags "-s -w"
  "$dest/etcd" --version | head -n 1
  touch "$dest/.complete"
}

build_kube_apiserver() {
  local v minor dest
  v=$(version_of "$HERE/kube/go.mod" k8s.io/kubernetes)
  minor=${v#v1.}; minor=${minor%%.*}
  dest=$CACHE/kube-apiserver-$v
  if [[ -f $dest/.complete && -x $dest/kube-apiserver ]]; then say "kube-apiserver $v: cached ($dest)"; return; fi
  say "kube-apiserver $v: building (cold: about 6 minutes on 2 cores)"
  mkdir -p "$dest"
  # The module's own version stamp is empty (it is set by the Makefile from git): set it, or
  # /version reports v0.0.0-master and clients negotiate the wrong features.
  run_build "kube-apiserver $v" kube "$dest/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  "$dest/kube-apiserver" --version
  touch "$dest/.complete"
}

build_kwok() {
  local v dest src
  v=$(version_of "$HERE/kwok/go.mod" sigs.k8s.io/kwok)
  dest=$CACHE/kwok-$v
  if [[ -f $dest/.complete && -x $dest/kwok ]]; then say "kwok $v: cached ($dest)"; return; fi
  say "kwok $v: building"
  mkdir -p "$dest"
  run_build "kwok $v" kwok "$dest/kwok" sigs.k8s.io/kwok/cmd/kwok -ldflags "-s -w"
  # The bare kwok binary has no built-in stages (kwokctl embeds them): ship the release's own stage
  # files and CRDs next to the binary so the harness feeds kwok exactly what that release expects.
  src=$(cd "$HERE/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  mkdir -p "$dest/stages" "$dest/crds"
  cp -f "$src/kustomize/stage/node/fast/node-initialize.yaml" \
    "$src/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
    "$src/kustomize/stage/pod/fast/pod-ready.yaml" \
    "$src/kustomize/stage/pod/fast/pod-complete.yaml" \
    "$src/kustomize/stage/pod/fast/pod-delete.yaml" "$dest/stages/"
  cp -f "$src"/kustomize/crd/bases/*.yaml "$dest/crds/"
  chmod -R u+w "$dest/stages" "$dest/crds"
  "$dest/kwok" --version 2>&1 | head -n 1 || true
  touch "$dest/.complete"
}

tools=("$@")
if [[ ${#tools[@]} -eq 0 ]]; then tools=(etcd kube-apiserver kwok); fi
total=$SECONDS
for t in "${tools[@]}"; do
  case $t in
    etcd) build_etcd ;;
    kube-apiserver | kube) build_kube_apiserver ;;
    kwok) build_kwok ;;
    *) say "ERROR: unknown tool '$t' (etcd, kube-apiserver, kwok)"; exit 2 ;;
  esac
done
say "done in $((SECONDS - total))s"
