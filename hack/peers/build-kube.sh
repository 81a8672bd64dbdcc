#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kubectl from the pinned tools module hack/peers/kube
# into a cache directory outside the clone, keyed by a stamp of the module's inputs.
# Prints the directory holding the binaries on stdout (last line); progress goes to stderr.
# Idempotent: a warm cache costs one sha256sum.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mod="$here/kube"
k8s_version=v1.37.2
cache_root="${APEIRO_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/apeiro-cmk/tools}"
stamp="$( (cat "$mod/go.mod" "$mod/go.sum" "$0"; go version) | sha256sum | cut -c1-16)"
out="$cache_root/kube-$stamp"
if [[ -x "$out/kube-apiserver" && -x "$out/etcd" && -x "$out/kubectl" ]]; then
	echo "control plane binaries cached in $out" >&2
	echo "$out"
	exit 0
fi
echo ">> building etcd + kube-apiserver + kubectl $k8s_version into $out (cold: ~5-11 min on 2 cores)" >&2
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=37 -X $pkg.gitTreeState=clean"
done
start=$(date +%s)
(
	cd "$mod"
	# Heartbeat so long cold builds show progress in CI logs.
	( while sleep 60; do echo "   ... still building control plane ($(( $(date +%s) - start ))s)" >&2; done ) &
	hb=$!
	trap 'kill $hb 2>/dev/null || true' EXIT
	GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
		go.etcd.io/etcd/server/v3 k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
)
mv "$tmp/server" "$tmp/etcd"
rm -rf "$out"
mv "$tmp" "$out"
echo ">> control plane built in $(( $(date +%s) - start ))s: $("$out/kube-apiserver" --version | sed -n 1p)" >&2
echo "$out"
