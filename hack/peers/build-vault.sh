#!/usr/bin/env bash
# Builds HashiCorp Vault v1.21.4 from the pinned tools module hack/peers/vault into a cache directory outside the
# clone. Vault serves the same transit/auth/sys HTTP API the OpenBao client speaks, so it is the test peer for the
# openbao keystore (OpenBao's own server module is not served by the Go module proxy).
# LICENCE: Vault >= 1.15 is BUSL-1.1. It is used only as a local test peer; nothing the project ships contains it
# (see docs/keystore-openbao.md).
# Vault's go.mod builds against an unpublished in-tree sdk; sdk v0.21.0 from the module cache plus sdk.patch
# matches it. The patched copy (hack/peers/vault/sdk-patched, a directory replace) is regenerated here on every
# build and never committed; sdk.patch is part of the build stamp.
# Prints the directory holding the `vault` binary on stdout (last line); progress on stderr.
# Cold: ~200 s of downloads + ~15 min build on 2 contended cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
mod="$here/vault"
peer_cache vault "$mod/go.mod" "$mod/go.sum" "$mod/sdk.patch" "$0"
peer_cached vault && exit 0
echo ">> building hashicorp/vault v1.21.4 (BUSL-1.1, test peer only) into $PEER_OUT (cold: ~15-20 min on 2 cores)" >&2
# Download outside any module, so the tools module's go.sum is never touched (the checksum database verifies it).
dl="$(mktemp -d)"
sdk="$(cd "$dl" && GOFLAGS= go mod download -json github.com/hashicorp/vault/sdk@v0.21.0 | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
rmdir "$dl"
[[ -d "$sdk" ]] || { echo "vault sdk v0.21.0 not found in the module cache" >&2; exit 1; }
rm -rf "$mod/sdk-patched"
cp -r "$sdk" "$mod/sdk-patched"
chmod -R u+w "$mod/sdk-patched"
(cd "$mod/sdk-patched" && patch -p1 -s --no-backup-if-mismatch <"$mod/sdk.patch")
peer_begin
(
	cd "$mod"
	GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$PEER_TMP/vault" github.com/hashicorp/vault
)
peer_commit
