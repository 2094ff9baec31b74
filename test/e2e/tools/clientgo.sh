#!/usr/bin/env bash
# Builds the client-go test client (test/e2e/proxy-h2.test.ts, the bench's client-go workload): the program
# in clientgo/ on k8s.io/client-go, at the version clientgo/go.mod pins, into a cache folder OUTSIDE the repo:
#
#   ${TOWER_E2E_CACHE:-$HOME/.cache/tower-e2e}/clientgo-<client-go version>/clientgo
#
# The marker file .complete holds the sha256 of the module's sources (go.mod, go.sum and every *.go file,
# sorted by name). A folder whose marker matches the sources is skipped, so a warm run takes a moment; an
# edit to any .go file rebuilds. The tests compute the same digest and fail on a stale or missing build,
# naming this script.
#
# Usage: bash test/e2e/tools/clientgo.sh
# Env:   TOWER_E2E_CACHE  cache root (default ~/.cache/tower-e2e)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$HERE/clientgo
CACHE=${TOWER_E2E_CACHE:-$HOME/.cache/tower-e2e}
mkdir -p "$CACHE"

# Same rules as build.sh: the local Go only, a static binary, exactly the committed go.mod/go.sum.
export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"

say() { printf '[clientgo %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if ! command -v go >/dev/null 2>&1; then
  say "ERROR: go not found in PATH (need Go 1.26.x)"; exit 1
fi

exec 9>"$CACHE/.clientgo.lock"
if ! flock -n 9; then
  say "another clientgo.sh holds $CACHE/.clientgo.lock; waiting for it"
  flock 9
fi

version=$(awk -v m=k8s.io/client-go '$1 == "require" && $2 == m { print $3; exit } $1 == m { print $2; exit }' "$SRC/go.mod")
if [[ -z "$version" ]]; then say "ERROR: k8s.io/client-go not required in $SRC/go.mod"; exit 1; fi
# One line per file: go.mod, go.sum, then the .go files in C-locale order. The tests compute the same text.
digest=$(cd "$SRC" && sha256sum go.mod go.sum $(LC_ALL=C ls -1 -- *.go) | sha256sum | cut -d' ' -f1)
dest=$CACHE/clientgo-$version

if [[ -x $dest/clientgo && -f $dest/.complete && $(cat "$dest/.complete") == "$digest" ]]; then
  say "k8s.io/client-go $version: cached ($dest)"
  exit 0
fi
say "k8s.io/client-go $version: building ($(go version))"
start=$SECONDS
mkdir -p "$dest"
rm -f "$dest/.complete"
(cd "$SRC" && go build -trimpath -ldflags "-s -w" -o "$dest/clientgo.tmp" .)
mv -f "$dest/clientgo.tmp" "$dest/clientgo"
printf '%s\n' "$digest" >"$dest/.complete"
say "built in $((SECONDS - start))s -> $dest/clientgo"
