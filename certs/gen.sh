#!/usr/bin/env bash
# Generates a development CA and the webhook's serving certificate for clusters without cert-manager.
#
#   certs/gen.sh                     # writes certs/out/{ca.crt,ca.key,tls.crt,tls.key}
#   EXTRA_SANS=my.host,10.1.2.3 certs/gen.sh
#   FORCE=1 certs/gen.sh             # new CA and new serving pair
#
# Idempotent: a valid, unexpired pair whose SANs already cover the request is kept as is (exit 0, nothing written).
# When only the serving certificate is stale (near expiry, SANs changed, key mismatch) it is re-issued from the
# existing CA, so the caBundle registered in the API server stays valid. ECDSA P-256 keys, PKCS#8 PEM.
#
# Environment:
#   OUT_DIR            output directory (default: certs/out next to this script)
#   SERVICE, NAMESPACE service DNS name parts (default apeiro-cmk-webhook, apeiro-cmk-system)
#   EXTRA_SANS         comma-separated extra DNS names and IP addresses
#   CA_DAYS, CERT_DAYS validity (default 1825 and 365 days)
#   RENEW_DAYS         re-issue when a certificate expires within this many days (default 30)
#   FORCE=1            regenerate everything
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT_DIR="${OUT_DIR:-$here/out}"
SERVICE="${SERVICE:-apeiro-cmk-webhook}"
NAMESPACE="${NAMESPACE:-apeiro-cmk-system}"
EXTRA_SANS="${EXTRA_SANS:-}"
CA_DAYS="${CA_DAYS:-1825}"
CERT_DAYS="${CERT_DAYS:-365}"
RENEW_DAYS="${RENEW_DAYS:-30}"
FORCE="${FORCE:-0}"

command -v openssl >/dev/null || { echo "gen.sh: openssl not found" >&2; exit 1; }

log() { echo "certs: $*" >&2; }

# --- wanted SANs ------------------------------------------------------------------------------------------------
dns=("$SERVICE.$NAMESPACE.svc" "$SERVICE.$NAMESPACE.svc.cluster.local" "localhost")
ips=("127.0.0.1")
if [[ -n "$EXTRA_SANS" ]]; then
	IFS=',' read -r -a extra <<<"$EXTRA_SANS"
	for s in "${extra[@]}"; do
		s="${s//[[:space:]]/}"
		[[ -z "$s" ]] && continue
		if [[ "$s" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || "$s" == *:* ]]; then ips+=("$s"); else dns+=("$s"); fi
	done
fi
expand_ip6() { # "fd00::1" -> "FD00:0:0:0:0:0:0:1", the form openssl prints (no embedded IPv4 forms)
	local a="$1" head tail out="" g i
	if [[ "$a" == *::* ]]; then head="${a%%::*}"; tail="${a#*::}"; else head="$a"; tail=""; fi
	local -a h=() t=() groups=()
	[[ -n "$head" ]] && IFS=: read -r -a h <<<"$head"
	[[ -n "$tail" ]] && IFS=: read -r -a t <<<"$tail"
	groups=("${h[@]}")
	for ((i = 0; i < 8 - ${#h[@]} - ${#t[@]}; i++)); do groups+=(0); done
	groups+=("${t[@]}")
	for g in "${groups[@]}"; do printf -v g '%X' "0x$g"; out+="$g:"; done
	echo "${out%:}"
}
want_sans() { # canonical list as openssl prints it: "DNS:a", "IP Address:1.2.3.4"
	local i
	for d in "${dns[@]}"; do echo "DNS:$d"; done
	for i in "${ips[@]}"; do
		if [[ "$i" == *:* ]]; then echo "IP Address:$(expand_ip6 "$i")"; else echo "IP Address:$i"; fi
	done
}
have_sans() {
	openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | tail -n +2 | tr ',' '\n' | sed 's/^[[:space:]]*//;/^$/d'
}
renew_secs=$((RENEW_DAYS * 86400))

# --- checks -----------------------------------------------------------------------------------------------------
pub_of_key() { openssl pkey -in "$1" -pubout 2>/dev/null; }
pub_of_crt() { openssl x509 -in "$1" -noout -pubkey 2>/dev/null; }

ca_ok() {
	[[ -s "$OUT_DIR/ca.crt" && -s "$OUT_DIR/ca.key" ]] || return 1
	openssl x509 -in "$OUT_DIR/ca.crt" -noout -checkend "$renew_secs" >/dev/null 2>&1 || { log "CA expires within $RENEW_DAYS days"; return 1; }
	[[ "$(pub_of_key "$OUT_DIR/ca.key")" == "$(pub_of_crt "$OUT_DIR/ca.crt")" ]] || { log "ca.key does not match ca.crt"; return 1; }
}

leaf_ok() {
	[[ -s "$OUT_DIR/tls.crt" && -s "$OUT_DIR/tls.key" ]] || return 1
	openssl x509 -in "$OUT_DIR/tls.crt" -noout -checkend "$renew_secs" >/dev/null 2>&1 || { log "serving certificate expires within $RENEW_DAYS days"; return 1; }
	[[ "$(pub_of_key "$OUT_DIR/tls.key")" == "$(pub_of_crt "$OUT_DIR/tls.crt")" ]] || { log "tls.key does not match tls.crt"; return 1; }
	openssl verify -CAfile "$OUT_DIR/ca.crt" "$OUT_DIR/tls.crt" >/dev/null 2>&1 || { log "tls.crt is not signed by ca.crt"; return 1; }
	local missing
	missing="$(comm -23 <(want_sans | sort -u) <(have_sans "$OUT_DIR/tls.crt" | sort -u))"
	[[ -z "$missing" ]] || { log "serving certificate lacks SANs: $(echo "$missing" | paste -sd, -)"; return 1; }
}

# --- generation -------------------------------------------------------------------------------------------------
umask 077
mkdir -p "$OUT_DIR"
tmp="$(mktemp -d "$OUT_DIR/.gen.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

gen_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

gen_ca() {
	log "generating CA (ECDSA P-256, $CA_DAYS days)"
	gen_key "$tmp/ca.key"
	cat >"$tmp/ca.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = apeiro-cmk dev CA
O = apeiro-cmk (development only)
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
	openssl req -x509 -new -key "$tmp/ca.key" -sha256 -days "$CA_DAYS" -config "$tmp/ca.cnf" -out "$tmp/ca.crt"
	mv -f "$tmp/ca.key" "$OUT_DIR/ca.key"
	mv -f "$tmp/ca.crt" "$OUT_DIR/ca.crt"
}

gen_leaf() {
	log "issuing serving certificate (ECDSA P-256, $CERT_DAYS days) for: $(want_sans | paste -sd, -)"
	gen_key "$tmp/tls.key"
	local alt="" n=0
	for d in "${dns[@]}"; do n=$((n + 1)); alt+="DNS.$n = $d"$'\n'; done
	n=0
	for i in "${ips[@]}"; do n=$((n + 1)); alt+="IP.$n = $i"$'\n'; done
	cat >"$tmp/leaf.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = ${dns[0]}
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = @alt
[alt]
$alt
CNF
	openssl req -new -key "$tmp/tls.key" -config "$tmp/leaf.cnf" -out "$tmp/tls.csr"
	openssl x509 -req -in "$tmp/tls.csr" -CA "$OUT_DIR/ca.crt" -CAkey "$OUT_DIR/ca.key" -CAcreateserial \
		-CAserial "$tmp/ca.srl" -sha256 -days "$CERT_DAYS" -extfile "$tmp/leaf.cnf" -extensions v3_leaf \
		-out "$tmp/tls.crt" 2>/dev/null
	# Write the key before the certificate: a reader that sees the new tls.crt also finds its key.
	mv -f "$tmp/tls.key" "$OUT_DIR/tls.key"
	mv -f "$tmp/tls.crt" "$OUT_DIR/tls.crt"
}

if [[ "$FORCE" == "1" ]]; then
	log "FORCE=1: regenerating CA and serving certificate"
	gen_ca
	gen_leaf
elif ! ca_ok; then
	gen_ca
	gen_leaf
elif ! leaf_ok; then
	gen_leaf
else
	log "valid CA and serving certificate already in $OUT_DIR (expire $(openssl x509 -in "$OUT_DIR/tls.crt" -noout -enddate | cut -d= -f2)); nothing to do (FORCE=1 to regenerate)"
	exit 0
fi

chmod 0644 "$OUT_DIR/ca.crt" "$OUT_DIR/tls.crt"
chmod 0600 "$OUT_DIR/ca.key" "$OUT_DIR/tls.key"
renew_secs=0 # the final check is about validity, not the renewal window
leaf_ok || { log "internal error: generated certificate does not verify"; exit 1; }
log "wrote $OUT_DIR/{ca.crt,ca.key,tls.crt,tls.key}"
