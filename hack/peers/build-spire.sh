#!/usr/bin/env bash
# Builds spire-server and spire-agent from the pinned tools module hack/peers/spire into a cache directory outside
# the clone. The identity tests start both: the server mints SVIDs, the agent serves them to the test process
# through the Workload API on a unix socket. Prints the directory holding both binaries on stdout (last line);
# progress on stderr. cgo (sqlite datastore, gcc). Cold build: ~13 min on 2 contended cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
mod="$here/spire"
peer_cache spire "$mod/go.mod" "$mod/go.sum" "$0"
peer_cached spire-server spire-agent && exit 0
echo ">> building spire-server + spire-agent v1.13.3 into $PEER_OUT (cold: ~13 min on 2 cores)" >&2
peer_begin
(
	cd "$mod"
	GOFLAGS=-mod=readonly CGO_ENABLED=1 go build -trimpath -ldflags "-s -w" -o "$PEER_TMP/" \
		github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
)
peer_commit
