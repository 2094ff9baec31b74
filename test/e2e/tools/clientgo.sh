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

TOOL_TAG=clientgo
# HERE, CACHE, say, take_lock, version_of, digest_build; the Go environment (see lib.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SRC=$HERE/clientgo
require_go
take_lock .clientgo.lock

version=$(version_of "$SRC/go.mod" k8s.io/client-go)
# One line per file: go.mod, go.sum, then the .go files in C-locale order. The tests compute the same text.
digest=$(cd "$SRC" && sha256sum go.mod go.sum $(LC_ALL=C ls -1 -- *.go) | sha256sum | cut -d' ' -f1)
digest_build "k8s.io/client-go $version" "$SRC" "$CACHE/clientgo-$version" clientgo "$digest"
