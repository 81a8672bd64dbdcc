package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// verifyReport is what `verify` prints: the facts a test or an operator checks, and the problems found.
type verifyReport struct {
	Digest     string            `json:"digest,omitempty"` // manifest digest, from the OCI layout
	ImageID    string            `json:"imageID"`          // config digest: what docker load calls the image ID
	User       string            `json:"user"`
	Entrypoint []string          `json:"entrypoint"`
	Labels     map[string]string `json:"labels"`
	Layers     int               `json:"layers"`
	Plugins    []string          `json:"plugins"`       // executables under /plugins
	Profile    []string          `json:"profilePaths"`  // paths config.image.yaml names
	Modules    []string          `json:"sbomGoModules"` // path@version of every Go module in the SBOM
	Debs       []string          `json:"sbomDebs"`
	Ran        []string          `json:"ran,omitempty"` // binaries started inside the unpacked image (-exec)
	Problems   []string          `json:"problems"`
}

type fileInfo struct {
	mode     int64
	uid, gid int
	typ      byte
	link     string
}

func runVerify(args []string) error {
	fs := flag.NewFlagSet("verify", flag.ExitOnError)
	tarPath := fs.String("tar", "", "docker archive written by build (required)")
	ociDir := fs.String("oci", "", "OCI layout written by build: its image must have the same digest")
	execDir := fs.String("exec", "", "unpack the image here and start each binary in it with chroot (needs root)")
	_ = fs.Parse(args)
	if *tarPath == "" {
		return errors.New("-tar is required")
	}
	r, err := verify(*tarPath, *ociDir, *execDir)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return err
	}
	if len(r.Problems) > 0 {
		return fmt.Errorf("%d problems: %s", len(r.Problems), strings.Join(r.Problems, "; "))
	}
	return nil
}

func verify(tarPath, ociDir, execDir string) (*verifyReport, error) {
	img, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", tarPath, err)
	}
	r := &verifyReport{Problems: []string{}}
	problem := func(f string, a ...any) { r.Problems = append(r.Problems, fmt.Sprintf(f, a...)) }
	// A docker archive carries the config and the layers but no manifest (docker load writes its own), so what
	// identifies the image across both outputs is the config digest, docker's image ID. The manifest digest, the
	// one to pin, comes from the OCI layout.
	id, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	r.ImageID = id.String()
	if ociDir != "" {
		idx, err := layout.ImageIndexFromPath(ociDir)
		if err != nil {
			return nil, fmt.Errorf("loading the OCI layout %s: %w", ociDir, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		if len(im.Manifests) != 1 {
			problem("OCI layout holds %d manifests, want 1", len(im.Manifests))
		} else {
			r.Digest = im.Manifests[0].Digest.String()
			oci, err := idx.Image(im.Manifests[0].Digest)
			if err != nil {
				return nil, fmt.Errorf("loading the OCI layout's image: %w", err)
			}
			if oid, err := oci.ConfigName(); err != nil {
				return nil, err
			} else if oid != id {
				problem("OCI layout image config %s differs from the archive's %s", oid, id)
			}
			if mt, _ := oci.MediaType(); mt != types.OCIManifestSchema1 {
				problem("OCI layout manifest media type %s", mt)
			}
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	r.User, r.Entrypoint, r.Labels = cfg.Config.User, cfg.Config.Entrypoint, cfg.Config.Labels
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		problem("platform %s/%s, want linux/amd64", cfg.OS, cfg.Architecture)
	}
	if r.User != "65532:65532" {
		problem("user %q, want 65532:65532", r.User)
	}
	for _, k := range []string{"org.opencontainers.image.source", "org.opencontainers.image.revision", "org.opencontainers.image.version"} {
		if r.Labels[k] == "" {
			problem("label %s missing", k)
		}
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	r.Layers = len(layers)

	// The flattened file system, as a runtime would unpack it.
	files := map[string]fileInfo{}
	contents := map[string][]byte{}
	want := map[string]bool{sbomPath: true, profileDir + "/" + imageProfile: true, "etc/passwd": true, "etc/ssl/certs/ca-certificates.crt": true}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the image's file system: %w", err)
		}
		p := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		files[p] = fileInfo{mode: h.Mode, uid: h.Uid, gid: h.Gid, typ: h.Typeflag, link: h.Linkname}
		if !h.ModTime.Equal(cfg.Created.Time) {
			problem("%s: mtime %s, want the image's creation time %s", p, h.ModTime.UTC().Format(time.RFC3339), cfg.Created.Time.UTC().Format(time.RFC3339))
		}
		if want[p] {
			b, err := io.ReadAll(io.LimitReader(tr, 16<<20))
			if err != nil {
				return nil, err
			}
			contents[p] = b
		}
	}
	executable := func(p string) bool {
		f, ok := files[strings.TrimPrefix(p, "/")]
		return ok && f.typ == tar.TypeReg && f.mode&0o005 == 0o005 // world r-x: the nonroot user can run it
	}
	if len(r.Entrypoint) == 0 || !executable(r.Entrypoint[0]) {
		problem("entrypoint %v is not an executable file of the image", r.Entrypoint)
	}
	for p := range files {
		if strings.HasPrefix(p, "plugins/") && executable(p) {
			r.Plugins = append(r.Plugins, "/"+p)
		}
	}
	sort.Strings(r.Plugins)
	if !bytes.Contains(contents["etc/passwd"], []byte(":65532:65532:")) {
		problem("/etc/passwd has no user 65532")
	}
	if n := bytes.Count(contents["etc/ssl/certs/ca-certificates.crt"], []byte("BEGIN CERTIFICATE")); n < 50 {
		problem("/etc/ssl/certs/ca-certificates.crt holds %d certificates", n)
	}
	if b, ok := contents[profileDir+"/"+imageProfile]; !ok {
		problem("/%s/%s missing", profileDir, imageProfile)
	} else if paths, err := profilePaths(b); err != nil {
		problem("/%s/%s: %v", profileDir, imageProfile, err)
	} else {
		seen := map[string]bool{}
		for _, p := range paths {
			if !seen[p] {
				seen[p] = true
				r.Profile = append(r.Profile, p)
			}
			if !executable(p) {
				problem("the profile names %s, which is not an executable file of the image", p)
			}
		}
	}
	var doc spdxDocument
	if b, ok := contents[sbomPath]; !ok {
		problem("/%s missing", sbomPath)
	} else if err := json.Unmarshal(b, &doc); err != nil {
		problem("/%s: %v", sbomPath, err)
	} else {
		if doc.SPDXVersion != "SPDX-2.3" {
			problem("SBOM spdxVersion %q", doc.SPDXVersion)
		}
		for _, p := range doc.Packages {
			switch {
			case strings.HasPrefix(p.SPDXID, "SPDXRef-Go-"):
				r.Modules = append(r.Modules, p.Name+"@"+p.VersionInfo)
			case strings.HasPrefix(p.SPDXID, "SPDXRef-Deb-"):
				r.Debs = append(r.Debs, p.Name+"@"+p.VersionInfo)
			}
		}
	}
	if execDir != "" {
		if err := runInImage(img, execDir, append([]string{"/webhook"}, r.Plugins...), r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// runInImage unpacks the image and starts each binary in it (chroot, as the nonroot user, no network needed):
// the webhook with --help, each plugin without the go-plugin handshake, which makes it print its refusal and
// exit. Either proves the binary starts there — for a cgo plugin, that the loader and C library of the base
// layer work. A missing loader shows as exec failing ("no such file or directory").
func runInImage(img v1.Image, dir string, bins []string, r *verifyReport) error {
	if os.Geteuid() != 0 {
		r.Problems = append(r.Problems, "-exec needs root (chroot)")
		return nil
	}
	if err := unpack(img, dir); err != nil {
		return err
	}
	for _, b := range bins {
		args := []string{}
		if b == "/webhook" {
			args = []string{"--help"}
		}
		cmd := exec.Command(b, args...)
		cmd.Dir = "/"
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dir, Credential: &syscall.Credential{Uid: nonrootUID, Gid: nonrootUID}}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("%s does not start in the image: %v", b, err))
			continue
		}
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			r.Problems = append(r.Problems, fmt.Sprintf("%s did not exit within 20s", b))
			continue
		}
		text := out.String()
		ok := strings.Contains(text, "plugin") || strings.Contains(text, "Usage") || strings.Contains(text, "usage")
		if !ok {
			r.Problems = append(r.Problems, fmt.Sprintf("%s in the image: unexpected output %q", b, firstLine(text)))
			continue
		}
		r.Ran = append(r.Ran, b)
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// unpack writes the image's flattened file system under dir (empty or absent). Paths are cleaned against "/", so
// no entry lands outside dir.
func unpack(img v1.Image, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := path.Clean("/" + h.Name)
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if err := noSymlinkParent(dir, p); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, os.FileMode(h.Mode&0o777)|dirExtra(h.Mode)); err != nil {
				return err
			}
			if err := os.Chmod(dst, os.FileMode(h.Mode&0o777)|dirExtra(h.Mode)); err != nil {
				return err
			}
			if err := os.Lchown(dst, h.Uid, h.Gid); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode&0o777))
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			f.Close()
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			// Absolute targets resolve inside the chroot; nothing here follows them outside it.
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return err
			}
		}
	}
}

// noSymlinkParent refuses an entry below a symlink of the unpacked tree: writing through it could leave dir.
func noSymlinkParent(dir, p string) error {
	cur := dir
	parts := strings.Split(strings.TrimPrefix(path.Dir(p), "/"), "/")
	for _, part := range parts {
		if part == "" {
			continue
		}
		cur = filepath.Join(cur, part)
		if fi, err := os.Lstat(cur); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("image entry %s lies below the symlink %s; refusing to unpack it", p, cur)
		}
	}
	return nil
}

func dirExtra(mode int64) os.FileMode {
	if mode&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}
