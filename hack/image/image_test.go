package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestParseLock(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, in, err string
		n             int
	}{
		{"comments and blanks", "# x\n\nlibc6 2.36-9+deb12u14 amd64 " + sum + "\n", "", 1},
		{"two packages", "libc6 2.36 amd64 " + sum + "\nca-certificates 20250419~deb12u2 all " + sum + "\n", "", 2},
		{"missing field", "libc6 2.36 amd64\n", "got 3 fields", 0},
		{"path in name", "../etc 1 amd64 " + sum + "\n", "invalid package name", 0},
		{"path in version", "libc6 1/../../x amd64 " + sum + "\n", "invalid version", 0},
		{"epoch", "libc6 1:2.36 amd64 " + sum + "\n", "epochs", 0},
		{"foreign arch", "libc6 2.36 arm64 " + sum + "\n", "architecture", 0},
		{"short hash", "libc6 2.36 amd64 abcd\n", "64 lower-case hex", 0},
		{"upper-case hash", "libc6 2.36 amd64 " + strings.ToUpper(sum) + "\n", "64 lower-case hex", 0},
		{"pinned twice", "libc6 2.36 amd64 " + sum + "\nlibc6 2.37 amd64 " + sum + "\n", "pinned twice", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLock(strings.NewReader(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || len(got) != tc.n {
				t.Fatalf("got %d packages, err %v; want %d", len(got), err, tc.n)
			}
		})
	}
}

func TestCheckDebRefusesAnotherFile(t *testing.T) {
	dir := t.TempDir()
	p := debPackage{"libc6", "2.36", "amd64", strings.Repeat("0", 64)}
	if err := os.WriteFile(filepath.Join(dir, p.file()), []byte("not the pinned package"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := checkDeb(dir, p); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("err = %v, want a refusal", err)
	}
	if _, err := checkDeb(t.TempDir(), p); err == nil || !strings.Contains(err.Error(), "debs.sh") {
		t.Fatalf("missing file: err = %v, want a hint at debs.sh", err)
	}
}

// The same entries, added in any order, give the same bytes; a different mtime gives different bytes.
func TestLayerIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "bin")
	if err := os.WriteFile(src, []byte("\x7fELF..."), 0o600); err != nil {
		t.Fatal(err)
	}
	entries := []entry{
		{Path: "plugins/b", Mode: 0o755, Src: src},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0::/:/sbin/nologin\n")},
		{Path: "lib64/ld.so", Link: "/lib/x/ld.so", Mode: 0o777},
		{Path: "home/nonroot", Mode: 0o700, UID: nonrootUID, GID: nonrootUID, Dir: true},
	}
	write := func(order []int, mtime time.Time) []byte {
		l := newLayerFS()
		for _, i := range order {
			if err := l.add(entries[i]); err != nil {
				t.Fatal(err)
			}
		}
		f := filepath.Join(dir, "layer.tgz")
		if err := l.writeGzip(f, mtime, 6); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	epoch := time.Unix(1700000000, 0)
	a, b := write([]int{0, 1, 2, 3}, epoch), write([]int{3, 2, 1, 0}, epoch)
	if !bytes.Equal(a, b) {
		t.Fatal("the order of add changed the layer")
	}
	if bytes.Equal(a, write([]int{0, 1, 2, 3}, epoch.Add(time.Second))) {
		t.Fatal("the mtime does not reach the layer")
	}
	l := newLayerFS()
	if err := l.add(entries[1]); err != nil {
		t.Fatal(err)
	}
	if err := l.add(entries[1]); err == nil {
		t.Fatal("a path added twice was accepted")
	}
}

func TestProvidesFollowsSymlinks(t *testing.T) {
	l := newLayerFS()
	for _, e := range []entry{
		{Path: "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", Mode: 0o755, Data: []byte{1}},
		{Path: "lib64/ld-linux-x86-64.so.2", Link: "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"},
		{Path: "lib/x86_64-linux-gnu/libc.so.6", Mode: 0o755, Data: []byte{1}},
		{Path: "lib/loop", Link: "loop"},
	} {
		if err := l.add(e); err != nil {
			t.Fatal(err)
		}
	}
	for need, want := range map[string]bool{
		"/lib64/ld-linux-x86-64.so.2": true, "libc.so.6": true, "libstdc++.so.6": false, "/lib/loop": false, "/lib": false,
	} {
		if got := l.provides(need); got != want {
			t.Errorf("provides(%q) = %t, want %t", need, got, want)
		}
	}
}

func TestModulePackage(t *testing.T) {
	h := sha256.Sum256([]byte("tree"))
	sum := "h1:" + base64.StdEncoding.EncodeToString(h[:])
	p := modulePackage(&debug.Module{Path: "github.com/openkcm/plugin-sdk", Version: "v0.14.0", Sum: sum})
	if p.VersionInfo != "v0.14.0" || len(p.Checksums) != 1 || p.Checksums[0].Value != hex.EncodeToString(h[:]) ||
		!strings.Contains(p.Comment, sum) || p.ExternalRefs[0].Locator != "pkg:golang/github.com/openkcm/plugin-sdk@v0.14.0" {
		t.Fatalf("unexpected package %+v", p)
	}
	r := modulePackage(&debug.Module{Path: "a.example/x", Version: "v1.0.0", Replace: &debug.Module{Path: "b.example/x", Version: "v1.0.1", Sum: sum}})
	if r.Name != "b.example/x" || r.VersionInfo != "v1.0.1" || !strings.Contains(r.Comment, "replaces a.example/x v1.0.0") {
		t.Fatalf("replace: unexpected package %+v", r)
	}
	if inc := modulePackage(&debug.Module{Path: "d.example/x", Version: "v2.0.0+incompatible"}); inc.ExternalRefs[0].Locator != "pkg:golang/d.example/x@v2.0.0%2Bincompatible" {
		t.Fatalf("purl of a +incompatible version: %+v", inc.ExternalRefs)
	}
	if bad := modulePackage(&debug.Module{Path: "c.example/x", Version: "v1.0.0", Sum: "h1:!!"}); len(bad.Checksums) != 0 {
		t.Fatalf("a malformed go.sum hash became a checksum: %+v", bad)
	}
}

func TestProfilePaths(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"plugins:\n  - {name: A, path: /plugins/a}\n", ""},
		{"plugins:\n  - {name: A, path: bin/plugins/a}\n", "want /plugins/"},
		{"plugins: []\n", "no plugins"},
		{"plugins: [", "yaml"},
	} {
		_, err := profilePaths([]byte(tc.in))
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: err = %v, want %q", tc.in, err, tc.err)
		}
	}
}

func TestCABundle(t *testing.T) {
	files := []debFile{
		{Path: "usr/share/ca-certificates/mozilla/A.crt", Data: []byte("-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----")},
		{Path: "usr/share/ca-certificates/mozilla/B.crt", Data: []byte("-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n")},
		{Path: "usr/share/doc/ca-certificates/copyright", Data: []byte("x")},
	}
	b, n, err := caBundle(files)
	if err != nil || n != 2 || !strings.HasSuffix(string(b), "B\n-----END CERTIFICATE-----\n") || !strings.Contains(string(b), "A\n-----END CERTIFICATE-----\n-----BEGIN") {
		t.Fatalf("bundle %q, n %d, err %v", b, n, err)
	}
	if _, _, err := caBundle(files[2:]); err == nil {
		t.Fatal("a package without certificates gave a bundle")
	}
}
