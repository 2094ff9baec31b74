#!/usr/bin/env bash
# Builds the Go end of the yamux interop test (test/e2e/yamux-interop.test.ts): the small program in
# yamux-peer/ on github.com/hashicorp/yamux, at the version yamux-peer/go.mod pins, into a cache folder
# OUTSIDE the repo:
#
#   ${TOWER_E2E_CACHE:-$HOME/.cache/tower-e2e}/yamux-peer-<yamux version>/yamux-peer
#
# The marker file .complete holds the sha256 of the peer's sources (go.mod, go.sum, main.go). A folder whose
# marker matches the sources is skipped, so a warm run takes a moment; an edit to main.go rebuilds. The test
# computes the same digest and fails on a stale or missing build, naming this script.
#
# Usage: bash test/e2e/tools/yamux-peer.sh
# Env:   TOWER_E2E_CACHE  cache root (default ~/.cache/tower-e2e)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$HERE/yamux-peer
CACHE=${TOWER_E2E_CACHE:-$HOME/.cache/tower-e2e}
mkdir -p "$CACHE"

# Same rules as build.sh: the local Go only, a static binary, exactly the committed go.mod/go.sum.
export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"

say() { printf '[yamux-peer %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if ! command -v go >/dev/null 2>&1; then
  say "ERROR: go not found in PATH (need Go 1.26.x)"; exit 1
fi

# Its own lock: build.sh's lock may be held for the minutes a control-plane build takes.
exec 9>"$CACHE/.yamux-peer.lock"
if ! flock -n 9; then
  say "another yamux-peer.sh holds $CACHE/.yamux-peer.lock; waiting for it"
  flock 9
fi

# `require M V` (go mod tidy's form for one requirement) or a line `M V` inside a require block.
version=$(awk -v m=github.com/hashicorp/yamux '$1 == "require" && $2 == m { print $3; exit } $1 == m { print $2; exit }' "$SRC/go.mod")
if [[ -z "$version" ]]; then say "ERROR: github.com/hashicorp/yamux not required in $SRC/go.mod"; exit 1; fi
# One line per file, in a fixed order; yamux-interop.test.ts computes the same text.
digest=$(cd "$SRC" && sha256sum go.mod go.sum main.go | sha256sum | cut -d' ' -f1)
dest=$CACHE/yamux-peer-$version

if [[ -x $dest/yamux-peer && -f $dest/.complete && $(cat "$dest/.complete") == "$digest" ]]; then
  say "hashicorp/yamux $version: cached ($dest)"
  exit 0
fi
say "hashicorp/yamux $version: building ($(go version))"
start=$SECONDS
mkdir -p "$dest"
rm -f "$dest/.complete"
(cd "$SRC" && go build -trimpath -ldflags "-s -w" -o "$dest/yamux-peer.tmp" .)
mv -f "$dest/yamux-peer.tmp" "$dest/yamux-peer"
printf '%s\n' "$digest" >"$dest/.complete"
say "built in $((SECONDS - start))s -> $dest/yamux-peer"
