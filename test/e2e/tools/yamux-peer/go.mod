// Wrapper module for the Go end of the yamux interop test. See ../yamux-peer.sh.
module tower.local/e2e/tools/yamux-peer

go 1.26.0

require github.com/hashicorp/yamux v0.1.2
