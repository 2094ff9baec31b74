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

TOOL_TAG=yamux-peer
# HERE, CACHE, say, take_lock, version_of, digest_build; the Go environment (see lib.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SRC=$HERE/yamux-peer
require_go
# Its own lock: build.sh's lock may be held for the minutes a control-plane build takes.
take_lock .yamux-peer.lock

version=$(version_of "$SRC/go.mod" github.com/hashicorp/yamux)
# One line per file, in a fixed order; yamux-interop.test.ts computes the same text.
digest=$(cd "$SRC" && sha256sum go.mod go.sum main.go | sha256sum | cut -d' ' -f1)
digest_build "hashicorp/yamux $version" "$SRC" "$CACHE/yamux-peer-$version" yamux-peer "$digest"
