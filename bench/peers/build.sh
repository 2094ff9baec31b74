#!/usr/bin/env bash
# Builds the benchmark peers from Go modules into a cache outside the repo:
#   ${TOWER_BENCH_CACHE:-$HOME/.cache/tower-bench}/chisel-<version>/chisel
#   ${TOWER_BENCH_CACHE:-$HOME/.cache/tower-bench}/konnectivity-<version>/{proxy-server,proxy-agent}
# Skips what is already built. Binaries are never committed; only this script
# and the Konnectivity wrapper module (konnectivity/go.mod, go.sum) are.
#
# Builds run one after another with -p 1 (override with TOWER_BENCH_GO_P):
# the bench machine has 2 cores and other builds may run beside this one.
# A peer that fails to build is reported and skipped; the script goes on and
# exits non-zero at the end if anything failed.
set -u -o pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${TOWER_BENCH_CACHE:-$HOME/.cache/tower-bench}"
par="${TOWER_BENCH_GO_P:-1}"
export GOTOOLCHAIN=local CGO_ENABLED=0

# chisel v1.11.5 (the version named in the issue) is refused by the module
# proxy ("403 Forbidden ... This module version is not available", also
# v1.11.4); v1.11.3 is the newest one it serves. See bench/README.md.
CHISEL_VERSION="${CHISEL_VERSION:-v1.11.3}"
# v0.36.0 needs go >= 1.26.2; the wrapper module pins it (and its
# konnectivity-client) — change both there, not here.
KONN_VERSION="$(sed -n 's|^\s*sigs.k8s.io/apiserver-network-proxy v\([0-9.]*\).*|v\1|p' "$here/konnectivity/go.mod")"

failed=()
log() { printf '[peers] %s\n' "$*" >&2; }

log "go: $(go version) · cache: $cache · -p $par"

build_chisel() {
  local dir="$cache/chisel-$CHISEL_VERSION"
  if [[ -x "$dir/chisel" ]]; then log "chisel $CHISEL_VERSION: already built ($dir/chisel)"; return 0; fi
  mkdir -p "$dir"
  log "chisel $CHISEL_VERSION: building…"
  local t0=$SECONDS
  # Not `go install chisel@v`: that also reads the module's version list to
  # look for deprecations, and the proxy answers 403 for that list. Building
  # inside the downloaded module (its own go.mod/go.sum as main module) needs
  # only the pinned version.
  local src
  if src="$(go mod download -json "github.com/jpillora/chisel@$CHISEL_VERSION" | sed -n 's|^\s*"Dir": "\(.*\)",\?$|\1|p')" && [[ -n "$src" ]] \
    && (cd "$src" && go build -p "$par" -trimpath -ldflags "-s -w -X github.com/jpillora/chisel/share.BuildVersion=$CHISEL_VERSION" -o "$dir/chisel.tmp" .) \
    && mv "$dir/chisel.tmp" "$dir/chisel"; then
    log "chisel $CHISEL_VERSION: built in $((SECONDS - t0)) s → $dir/chisel"
  else
    log "chisel $CHISEL_VERSION: BUILD FAILED"; failed+=("chisel"); return 1
  fi
}

build_konnectivity() {
  local dir="$cache/konnectivity-$KONN_VERSION"
  local t0=$SECONDS
  mkdir -p "$dir"
  for pair in "proxy-server:cmd/server" "proxy-agent:cmd/agent"; do
    local bin="${pair%%:*}" pkg="sigs.k8s.io/apiserver-network-proxy/${pair#*:}"
    if [[ -x "$dir/$bin" ]]; then log "konnectivity $KONN_VERSION: $bin already built"; continue; fi
    log "konnectivity $KONN_VERSION: building $bin…"
    if (cd "$here/konnectivity" && go build -p "$par" -trimpath -ldflags "-s -w" -o "$dir/$bin.tmp" "$pkg"); then
      mv "$dir/$bin.tmp" "$dir/$bin"
      log "konnectivity $KONN_VERSION: $bin built ($((SECONDS - t0)) s so far)"
    else
      rm -f "$dir/$bin.tmp"
      log "konnectivity $KONN_VERSION: $bin BUILD FAILED"; failed+=("konnectivity/$bin")
    fi
  done
}

build_chisel
build_konnectivity

if ((${#failed[@]})); then log "failed: ${failed[*]}"; exit 1; fi
log "all peers built"
