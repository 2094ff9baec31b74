# Shell helpers the build scripts next to this file share (build.sh, federation.sh, clientgo.sh,
# yamux-peer.sh): sourced, never run. The caller sets `set -euo pipefail` and TOOL_TAG (its log prefix)
# before sourcing it. Sourcing sets HERE (this folder), CACHE (the cache root, created) and the Go
# environment every build here uses:
#
# - the local Go only (1.26.x): every wrapper's `go` line and every pinned release was chosen to build
#   with it, and a toolchain download would be one more thing that can fail in CI;
# - static binaries (no cgo);
# - -mod=readonly: build exactly what the committed go.mod/go.sum say; never rewrite them during a build.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${TOWER_E2E_CACHE:-$HOME/.cache/tower-e2e}
mkdir -p "$CACHE"
export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"

say() { printf '[%s %s] %s\n' "$TOOL_TAG" "$(date +%H:%M:%S)" "$*"; }

# require_go: fails unless go is on PATH.
require_go() {
  if ! command -v go >/dev/null 2>&1; then
    say "ERROR: go not found in PATH (need Go 1.26.x)"; exit 1
  fi
}

# take_lock NAME: an exclusive flock on $CACHE/NAME (fd 9) for the rest of the script, waiting for the
# holder if there is one: two runs (two test suites, a developer and CI) would write the same files.
take_lock() {
  exec 9>"$CACHE/$1"
  if ! flock -n 9; then
    say "another build holds $CACHE/$1; waiting for it"
    flock 9
  fi
}

# control_plane_setup: how build.sh and federation.sh start: LOG (the full `go build -v` output,
# $TOWER_E2E_BUILD_LOG or $CACHE/build.log), Go on PATH, and the lock the two share (.build.lock): two Go
# builds of this size at once would exhaust 2 cores and the memory.
control_plane_setup() {
  LOG=${TOWER_E2E_BUILD_LOG:-$CACHE/build.log}
  : >>"$LOG"
  require_go
  say "$(go version); cache $CACHE; log $LOG"
  take_lock .build.lock
}

# version_of GOMOD MODULE -> the version GOMOD requires for MODULE: `require M V` (go mod tidy's form for
# one requirement) or a line `M V` inside a require block.
version_of() {
  local v
  v=$(awk -v m="$2" '$1 == "require" && $2 == m { print $3; exit } $1 == m { print $2; exit }' "$1")
  if [[ -z "$v" ]]; then say "ERROR: $2 not required in $1"; exit 1; fi
  printf '%s' "$v"
}

# logged_build NAME DIR [go build arguments...]: `go build -p 2 -v -trimpath ARGS` in $HERE/DIR, its output
# appended to $LOG (set by the caller), with a progress line every 30 s (the number of packages compiled
# so far) so a cold CI run does not look hung. Returns 1, after the log's last lines, when the build fails.
logged_build() {
  local name=$1 dir=$2
  shift 2
  local start=$SECONDS mark
  mark=$(wc -l <"$LOG")
  (cd "$HERE/$dir" && go build -p 2 -v -trimpath "$@") >>"$LOG" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    # `wait -n` would return early on any child; poll the one we started instead.
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name: still building, $(($(wc -l <"$LOG") - mark)) packages so far, $((SECONDS - start))s"
    fi
  done
  if ! wait "$pid"; then
    say "ERROR: $name build failed after $((SECONDS - start))s; last lines of $LOG:"
    tail -n 30 "$LOG" >&2
    return 1
  fi
  say "$name: built in $((SECONDS - start))s"
}

# digest_build LABEL SRC DEST BINARY DIGEST: one small program (the module in SRC) built into DEST/BINARY,
# unless DEST/.complete already holds DIGEST (the sha256 of its sources, which the tests compute too):
# then it is cached and nothing runs. The marker is written last, so a failed build leaves none.
digest_build() {
  local label=$1 src=$2 dest=$3 bin=$4 digest=$5 start
  if [[ -x $dest/$bin && -f $dest/.complete && $(cat "$dest/.complete") == "$digest" ]]; then
    say "$label: cached ($dest)"
    return 0
  fi
  say "$label: building ($(go version))"
  start=$SECONDS
  mkdir -p "$dest"
  rm -f "$dest/.complete"
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$dest/$bin.tmp" .)
  mv -f "$dest/$bin.tmp" "$dest/$bin"
  printf '%s\n' "$digest" >"$dest/.complete"
  say "built in $((SECONDS - start))s -> $dest/$bin"
}
