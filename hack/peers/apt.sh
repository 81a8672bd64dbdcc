#!/usr/bin/env bash
# Installs Debian packages the tests use as real peers (e.g. prometheus-alertmanager, pebble, softhsm2) when they
# are missing; a no-op when all are installed. Needs root (CI and the dev machines run as root) or sudo.
set -euo pipefail
missing=()
for p in "$@"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo ">> apt-get install ${missing[*]}" >&2
# Serialise concurrent installs (parallel make or several test runs) on one lock.
exec 9>"${TMPDIR:-/tmp}/apeiro-cmk-apt.lock"
flock 9
$sudo apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
