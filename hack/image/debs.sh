#!/usr/bin/env bash
# Fetches the Debian packages pinned in hack/image/debian.lock into a cache outside the clone
# (<tools cache>/image-debs/<name>_<version>_<arch>.deb) and prints that directory as the last stdout line.
# Files already cached with the pinned SHA-256 cost nothing; a download with another hash is refused and discarded.
#
#   bash hack/image/debs.sh            fetch what is missing, print the cache directory
#   bash hack/image/debs.sh --update   rewrite debian.lock with the archive's current candidate versions
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lock="$here/debian.lock"
cache="${APEIRO_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apeiro-cmk/tools}/image-debs"
mkdir -p "$cache"
# apt-get download writes into the working directory; one lock serialises concurrent runs (parallel make, tests).
exec 9>"${TMPDIR:-/tmp}/apeiro-cmk-image-debs.lock"
flock 9

fetch() { # name version arch -> path of the downloaded file in a fresh directory
	local tmp
	tmp="$(mktemp -d "$cache/.dl.XXXXXX")"
	# _apt cannot write into root-owned temporary directories; the download is verified by hash below anyway.
	chmod 0755 "$tmp"
	(cd "$tmp" && apt-get download -qq "$1:$3=$2" >&2) || { rm -rf "$tmp"; return 1; }
	ls "$tmp"/*.deb
}

if [[ "${1:-}" == "--update" ]]; then
	apt-get update -qq >&2 || true
	out="$(mktemp)"
	grep '^#' "$lock" >"$out"
	while read -r name _ arch _; do
		ver="$(apt-cache policy "$name:$arch" | awk '/Candidate:/ {print $2}')"
		[[ -n "$ver" && "$ver" != "(none)" ]] || { echo "no candidate version of $name:$arch" >&2; exit 1; }
		f="$(fetch "$name" "$ver" "$arch")"
		sum="$(sha256sum "$f" | cut -d' ' -f1)"
		mv "$f" "$cache/${name}_${ver}_${arch}.deb"
		rmdir "$(dirname "$f")"
		echo "$name $ver $arch $sum" >>"$out"
		echo ">> $name $ver $arch $sum" >&2
	done < <(grep -v '^#' "$lock" | grep -v '^[[:space:]]*$')
	mv "$out" "$lock"
	echo "$cache"
	exit 0
fi

while read -r name ver arch sum; do
	want="$cache/${name}_${ver}_${arch}.deb"
	if [[ -f "$want" ]] && [[ "$(sha256sum "$want" | cut -d' ' -f1)" == "$sum" ]]; then
		continue
	fi
	echo ">> apt-get download $name=$ver ($arch)" >&2
	f="$(fetch "$name" "$ver" "$arch")" || {
		echo "cannot download $name $ver: Debian's archive may have moved on; run 'make image-debs-update' and commit hack/image/debian.lock" >&2
		exit 1
	}
	got="$(sha256sum "$f" | cut -d' ' -f1)"
	if [[ "$got" != "$sum" ]]; then
		rm -rf "$(dirname "$f")"
		echo "$name $ver: downloaded SHA-256 $got, debian.lock pins $sum; refusing it" >&2
		exit 1
	fi
	mv "$f" "$want"
	rmdir "$(dirname "$f")"
done < <(grep -v '^#' "$lock" | grep -v '^[[:space:]]*$')
echo "$cache"
