#!/usr/bin/env bash
# Builds Ory Hydra (a real, OpenID-certified OAuth2/OIDC provider) from the pinned tools module hack/peers/hydra
# into a cache directory outside the clone. The identity tests use it as the platform IdP: it issues real
# JWT access tokens and ID tokens, signed with keys published through discovery + JWKS, as Keycloak does.
# Prints the directory holding the `hydra` binary on stdout (last line); progress on stderr.
# The sqlite tag lets `DSN=memory` keep all state in memory (cgo, needs gcc). Cold build: ~4-8 min on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
mod="$here/hydra"
peer_cache hydra "$mod/go.mod" "$mod/go.sum" "$0"
peer_cached hydra && exit 0
echo ">> building ory/hydra v2.3.0 into $PEER_OUT (cold: ~4-8 min on 2 cores)" >&2
peer_begin
(
	cd "$mod"
	GOFLAGS=-mod=readonly CGO_ENABLED=1 go build -trimpath -ldflags "-s -w" \
		-tags sqlite,sqlite_omit_load_extension -o "$PEER_TMP/hydra" github.com/ory/hydra/v2
)
peer_commit
