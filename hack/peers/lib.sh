#!/usr/bin/env bash
# Shared helpers for hack/peers/build-*.sh: every peer is built once into a cache directory outside the clone,
# keyed by a stamp over its inputs, and reused while the stamp matches. Source this file; do not run it.
#
#   peer_cache <name> <input files...>   sets PEER_OUT=<cache>/<name>-<stamp> (stamp: sha256 of the files + go version)
#   peer_cached <binaries...>            true when every named binary exists in PEER_OUT and the stamp file is there
#   peer_begin                           creates PEER_TMP (a fresh staging directory) and starts a progress heartbeat
#   peer_commit                          writes the stamp, moves PEER_TMP to PEER_OUT and prints PEER_OUT
#
# Progress goes to stderr; the last line on stdout is the directory holding the binaries.
set -euo pipefail
peer_cache_root="${APEIRO_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apeiro-cmk/tools}"

peer_cache() {
	local name="$1"
	shift
	PEER_NAME="$name"
	PEER_STAMP="$( (cat "$@"; go env GOVERSION GOOS GOARCH) | sha256sum | cut -c1-16)"
	PEER_OUT="$peer_cache_root/$name-$PEER_STAMP"
}

peer_cached() {
	[[ -f "$PEER_OUT/.stamp" ]] || return 1
	local b
	for b in "$@"; do [[ -x "$PEER_OUT/$b" ]] || return 1; done
	echo "$PEER_NAME cached in $PEER_OUT" >&2
	echo "$PEER_OUT"
}

peer_begin() {
	PEER_TMP="$PEER_OUT.tmp.$$"
	rm -rf "$PEER_TMP"
	mkdir -p "$PEER_TMP"
	PEER_START=$(date +%s)
	# The heartbeat writes to stderr only and must not hold stdout: `$(build-<peer>.sh)` waits until every holder of
	# stdout exits, and a sleeping heartbeat would delay it by up to a minute after the build.
	( while sleep 60; do echo "   ... still building $PEER_NAME ($(( $(date +%s) - PEER_START ))s)"; done ) >&2 &
	PEER_HEARTBEAT=$!
	trap 'kill $PEER_HEARTBEAT 2>/dev/null || true; rm -rf "$PEER_TMP"' EXIT
}

peer_commit() {
	kill "$PEER_HEARTBEAT" 2>/dev/null || true
	echo "$PEER_STAMP" >"$PEER_TMP/.stamp"
	rm -rf "$PEER_OUT"
	mv "$PEER_TMP" "$PEER_OUT"
	trap - EXIT
	echo ">> $PEER_NAME built in $(( $(date +%s) - PEER_START ))s into $PEER_OUT" >&2
	echo "$PEER_OUT"
}
