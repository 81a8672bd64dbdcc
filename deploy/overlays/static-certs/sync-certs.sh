#!/usr/bin/env bash
# Makes deploy/overlays/static-certs buildable: generates (or keeps) the dev CA and serving pair with certs/gen.sh,
# then copies ca.crt, tls.crt and tls.key next to the kustomization (kustomize reads no files outside it).
# ca.key is never copied. Environment is passed through to certs/gen.sh (EXTRA_SANS, FORCE, ...).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
src="${OUT_DIR:-$root/certs/out}"
OUT_DIR="$src" bash "$root/certs/gen.sh"
umask 077
mkdir -p "$here/tls"
for f in ca.crt tls.crt tls.key; do
	# Copy via a temp file + rename so a concurrent `kubectl apply -k` never reads a half-written file.
	cp "$src/$f" "$here/tls/.$f.tmp"
	mv -f "$here/tls/.$f.tmp" "$here/tls/$f"
done
echo "static-certs: $here/tls/{ca.crt,tls.crt,tls.key} ready; apply with: kubectl apply --server-side -k ${here#"$root"/}" >&2
