#!/usr/bin/env bash
# Builds a cert-manager controller (cert-manager v1.21.2's own controllers, wired by hack/peers/certmanager/main.go)
# and copies cert-manager's CRDs out of the module cache next to it, into a cache directory outside the clone.
# Prints the directory on stdout (last line): <dir>/certmanager-controller and <dir>/crds/*.yaml.
# Cold: ~2 min on 2 cores; warm: one sha256sum.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=hack/peers/lib.sh
source "$here/lib.sh"
mod="$here/certmanager"
peer_cache certmanager "$mod/go.mod" "$mod/go.sum" "$mod/main.go" "$0"
if peer_cached certmanager-controller && [[ -f "$PEER_OUT/crds/cert-manager.io_certificaterequests.yaml" ]]; then
	exit 0
fi
echo ">> building cert-manager controllers into $PEER_OUT (cold: ~2 min)" >&2
peer_begin
(
	cd "$mod"
	GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$PEER_TMP/certmanager-controller" .
	# The CRDs ship in the module zip; copy them rather than committing a second copy to the repository.
	src="$(GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)"
	mkdir -p "$PEER_TMP/crds"
	cp "$src"/deploy/crds/*.yaml "$PEER_TMP/crds/"
	chmod 0644 "$PEER_TMP"/crds/*.yaml
)
peer_commit
