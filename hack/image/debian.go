package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// debPackage is one line of debian.lock: a Debian package pinned by version and by the SHA-256 of its .deb.
type debPackage struct {
	Name, Version, Arch, SHA256 string
}

func (p debPackage) file() string { return p.Name + "_" + p.Version + "_" + p.Arch + ".deb" }

var (
	debNameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	debVersionRE = regexp.MustCompile(`^[0-9A-Za-z.+~-]+$`)
	sha256RE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// parseLock reads debian.lock. Every field is checked: names and versions become file names in the cache.
func parseLock(r io.Reader) ([]debPackage, error) {
	var pkgs []debPackage
	seen := map[string]bool{}
	sc := bufio.NewScanner(io.LimitReader(r, 64<<10))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			return nil, fmt.Errorf("debian.lock line %d: want \"name version arch sha256\", got %d fields", n, len(f))
		}
		p := debPackage{f[0], f[1], f[2], f[3]}
		switch {
		case !debNameRE.MatchString(p.Name):
			return nil, fmt.Errorf("debian.lock line %d: invalid package name %q", n, p.Name)
		case !debVersionRE.MatchString(p.Version):
			return nil, fmt.Errorf("debian.lock line %d: invalid version %q (epochs are not supported)", n, p.Version)
		case p.Arch != "amd64" && p.Arch != "all":
			return nil, fmt.Errorf("debian.lock line %d: architecture %q, the image is amd64", n, p.Arch)
		case !sha256RE.MatchString(p.SHA256):
			return nil, fmt.Errorf("debian.lock line %d: sha256 must be 64 lower-case hex digits", n)
		case seen[p.Name]:
			return nil, fmt.Errorf("debian.lock line %d: %s pinned twice", n, p.Name)
		}
		seen[p.Name] = true
		pkgs = append(pkgs, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading debian.lock: %w", err)
	}
	return pkgs, nil
}

// checkDeb verifies that the cached .deb is exactly the pinned file.
func checkDeb(dir string, p debPackage) (string, error) {
	file := filepath.Join(dir, p.file())
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w (run `bash hack/image/debs.sh`)", p.Name, p.Version, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", file, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
		return "", fmt.Errorf("%s: SHA-256 %s, debian.lock pins %s; refusing it", file, got, p.SHA256)
	}
	return file, nil
}

// debFile is one regular file or symlink of a package's data archive, path without the leading "./".
type debFile struct {
	Path, Link string
	Mode       int64
	Data       []byte
}

// readDeb returns the files of a .deb's data archive whose path satisfies keep, and the package's control stanza.
// dpkg-deb does the unpacking (ar + xz/zstd), so no compression library is needed here.
func readDeb(file string, keep func(string) bool) ([]debFile, []byte, error) {
	control, err := exec.Command("dpkg-deb", "--field", file).Output()
	if err != nil {
		return nil, nil, fmt.Errorf("dpkg-deb --field %s: %w", file, err)
	}
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w", file, err)
	}
	var files []debFile
	tr := tar.NewReader(out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			_ = cmd.Wait()
			return nil, nil, fmt.Errorf("reading %s: %w", file, err)
		}
		p := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if p == "." || strings.HasPrefix(p, "../") || !keep(p) {
			continue
		}
		switch h.Typeflag {
		case tar.TypeReg:
			if h.Size > 64<<20 {
				_ = cmd.Wait()
				return nil, nil, fmt.Errorf("%s: %s is %d bytes, more than 64 MiB", file, p, h.Size)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				_ = cmd.Wait()
				return nil, nil, fmt.Errorf("reading %s from %s: %w", p, file, err)
			}
			files = append(files, debFile{Path: p, Mode: h.Mode & 0o755, Data: b})
		case tar.TypeSymlink:
			files = append(files, debFile{Path: p, Link: h.Linkname, Mode: 0o777})
		}
	}
	if err := cmd.Wait(); err != nil {
		return nil, nil, fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", file, err, stderr.String())
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, control, nil
}

// caBundle concatenates the Mozilla certificates of the ca-certificates package, ordered by file name, the way
// update-ca-certificates builds /etc/ssl/certs/ca-certificates.crt with the default configuration. Only the
// package's certificates are used: never the build machine's bundle, which may hold locally added CAs.
func caBundle(files []debFile) ([]byte, int, error) {
	var buf bytes.Buffer
	n := 0
	for _, f := range files {
		if !strings.HasPrefix(f.Path, "usr/share/ca-certificates/mozilla/") || !strings.HasSuffix(f.Path, ".crt") {
			continue
		}
		buf.Write(f.Data)
		if !bytes.HasSuffix(f.Data, []byte("\n")) {
			buf.WriteByte('\n')
		}
		n++
	}
	if n == 0 {
		return nil, 0, errors.New("the ca-certificates package holds no usr/share/ca-certificates/mozilla/*.crt")
	}
	return buf.Bytes(), n, nil
}
