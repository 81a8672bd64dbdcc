package main

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"gopkg.in/yaml.v3"
)

const (
	nonrootUID   = 65532
	imageName    = "apeiro-cmk"
	sbomPath     = "sbom/apeiro-cmk.spdx.json"
	profileDir   = "profiles/apeiro-profile"
	imageProfile = "config.image.yaml"
)

// buildOptions are every input of the image besides the files they name; equal options over equal files give
// an equal digest.
type buildOptions struct {
	Root, Bin, Debs, Lock, Out string
	Tag, Version, Revision     string
	Source                     string
	Epoch                      time.Time
	Level                      int
}

func runBuild(args []string) error {
	fs := flag.NewFlagSet("build", flag.ExitOnError)
	o := buildOptions{}
	fs.StringVar(&o.Root, "root", "../..", "repository root (profiles are read from here)")
	fs.StringVar(&o.Bin, "bin", "", "directory written by `compile` (required)")
	fs.StringVar(&o.Debs, "debs", "", "directory of the .deb files pinned in debian.lock (required; hack/image/debs.sh prints it)")
	fs.StringVar(&o.Lock, "lock", "", "debian.lock (default <root>/hack/image/debian.lock)")
	fs.StringVar(&o.Out, "out", "", "output directory (required): oci/, apeiro-cmk.tar, apeiro-cmk.spdx.json, digest")
	fs.StringVar(&o.Tag, "tag", "ghcr.io/apeirora/apeiro-cmk:dev", "image reference recorded in the tarball and the OCI layout")
	fs.StringVar(&o.Version, "version", "dev", "org.opencontainers.image.version")
	fs.StringVar(&o.Revision, "revision", "unknown", "org.opencontainers.image.revision (the commit)")
	fs.StringVar(&o.Source, "source", "https://github.com/apeirora/apeiro-cmk", "org.opencontainers.image.source")
	epoch := fs.String("source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "seconds since 1970 for every timestamp (default $SOURCE_DATE_EPOCH; required)")
	fs.IntVar(&o.Level, "gzip-level", gzip.DefaultCompression, "gzip level of the layers (part of the inputs: another level, another digest)")
	_ = fs.Parse(args)
	if o.Bin == "" || o.Debs == "" || o.Out == "" {
		return errors.New("-bin, -debs and -out are required")
	}
	secs, err := strconv.ParseInt(*epoch, 10, 64)
	if err != nil || secs < 0 || secs > 1<<33 {
		return fmt.Errorf("-source-date-epoch / SOURCE_DATE_EPOCH %q: want seconds since 1970 (e.g. git log -1 --format=%%ct)", *epoch)
	}
	o.Epoch = time.Unix(secs, 0).UTC()
	if o.Lock == "" {
		o.Lock = filepath.Join(o.Root, "hack", "image", "debian.lock")
	}
	digest, err := build(o)
	if err != nil {
		return err
	}
	fmt.Println(digest)
	return nil
}

func build(o buildOptions) (string, error) {
	ref, err := name.NewTag(o.Tag, name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("-tag %q: %w", o.Tag, err)
	}
	for _, v := range []struct{ flag, val string }{{"version", o.Version}, {"revision", o.Revision}, {"source", o.Source}} {
		if v.val == "" || len(v.val) > 256 || strings.ContainsAny(v.val, "\x00\n\r") {
			return "", fmt.Errorf("-%s %q: want 1-256 characters on one line", v.flag, v.val)
		}
	}
	lf, err := os.Open(o.Lock)
	if err != nil {
		return "", err
	}
	pkgs, err := parseLock(lf)
	lf.Close()
	if err != nil {
		return "", err
	}

	base, debs, err := baseLayer(o, pkgs)
	if err != nil {
		return "", err
	}
	app, bins, err := appLayer(o, base)
	if err != nil {
		return "", err
	}
	sbom, err := buildSBOM(imageName, o.Version, o.Revision, o.Source, o.Epoch, bins, debs)
	if err != nil {
		return "", err
	}
	if err := app.add(entry{Path: sbomPath, Mode: 0o644, Data: sbom}); err != nil {
		return "", err
	}

	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(o.Out, ".layers-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	created := v1.Time{Time: o.Epoch}
	for i, l := range []struct {
		fs  *layerFS
		why string
	}{
		{base, "base: Debian " + debList(pkgs) + ", /etc/passwd and /etc/group (nonroot 65532)"},
		{app, "apeiro-cmk " + o.Version + ": /webhook, /plugins, /profiles, /sbom"},
	} {
		file := filepath.Join(work, fmt.Sprintf("layer%d.tar.gz", i))
		if err := l.fs.writeGzip(file, o.Epoch, o.Level); err != nil {
			return "", fmt.Errorf("writing layer %d: %w", i, err)
		}
		layer, err := tarball.LayerFromFile(file, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return "", err
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
			Created: created, CreatedBy: "hack/image: " + l.why, Comment: "built without a container engine",
		}})
		if err != nil {
			return "", err
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS, cfg.Created = "amd64", "linux", created
	cfg.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", nonrootUID, nonrootUID),
		Entrypoint: []string{"/webhook"},
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		ExposedPorts: map[string]struct{}{
			"8080/tcp": {}, "8081/tcp": {}, "9443/tcp": {},
		},
		Labels: map[string]string{
			"org.opencontainers.image.source":      o.Source,
			"org.opencontainers.image.revision":    o.Revision,
			"org.opencontainers.image.version":     o.Version,
			"org.opencontainers.image.created":     o.Epoch.Format(time.RFC3339),
			"org.opencontainers.image.title":       imageName,
			"org.opencontainers.image.description": "apeiro-cmk admission webhook and OpenKCM plugins",
			"org.opencontainers.image.licenses":    "Apache-2.0",
			"io.apeiro-cmk.sbom":                   "/" + sbomPath,
			"io.apeiro-cmk.profile":                "/" + profileDir + "/" + imageProfile,
		},
	}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return "", err
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}

	// Outputs: replace, never merge with, an older build.
	ociDir := filepath.Join(o.Out, "oci")
	if err := os.RemoveAll(ociDir); err != nil {
		return "", err
	}
	lp, err := layout.Write(ociDir, empty.Index)
	if err != nil {
		return "", err
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref.TagStr(),
		"io.containerd.image.name":          ref.Name(),
	})); err != nil {
		return "", fmt.Errorf("writing the OCI layout: %w", err)
	}
	tarPath := filepath.Join(o.Out, imageName+".tar")
	if err := tarball.WriteToFile(tarPath+".tmp", ref, img); err != nil {
		return "", fmt.Errorf("writing the docker archive: %w", err)
	}
	if err := os.Rename(tarPath+".tmp", tarPath); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(o.Out, imageName+".spdx.json"), sbom, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(o.Out, "digest"), []byte(digest.String()+"\n"), 0o644); err != nil {
		return "", err
	}
	return digest.String(), nil
}

func debList(pkgs []debPackage) string {
	var s []string
	for _, p := range pkgs {
		s = append(s, p.Name+" "+p.Version)
	}
	return strings.Join(s, ", ")
}

// baseLayer: CA certificates and the C library from the pinned Debian packages (the C library only serves plugins
// built with cgo), a dpkg status entry per package so image scanners see them, and the nonroot user.
func baseLayer(o buildOptions, pkgs []debPackage) (*layerFS, []sbomDeb, error) {
	l := newLayerFS()
	var debs []sbomDeb
	have := map[string]bool{}
	for _, p := range pkgs {
		file, err := checkDeb(o.Debs, p)
		if err != nil {
			return nil, nil, err
		}
		copyright := "usr/share/doc/" + p.Name + "/copyright"
		var keep func(string) bool
		switch p.Name {
		case "ca-certificates":
			keep = func(s string) bool {
				return s == copyright || strings.HasPrefix(s, "usr/share/ca-certificates/mozilla/")
			}
		case "libc6":
			// The loader and the libraries; not gconv modules, locales or documentation.
			keep = func(s string) bool {
				return s == copyright || strings.HasPrefix(s, "lib/") || strings.HasPrefix(s, "lib64/") ||
					strings.HasPrefix(s, "etc/ld.so.conf.d/")
			}
		default:
			return nil, nil, fmt.Errorf("debian.lock pins %s, the image builder knows what to take from ca-certificates and libc6 only", p.Name)
		}
		files, control, err := readDeb(file, keep)
		if err != nil {
			return nil, nil, err
		}
		if p.Name == "ca-certificates" {
			bundle, n, err := caBundle(files)
			if err != nil {
				return nil, nil, err
			}
			if n < 50 {
				return nil, nil, fmt.Errorf("ca-certificates %s: only %d certificates", p.Version, n)
			}
			if err := l.add(entry{Path: "etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Data: bundle}); err != nil {
				return nil, nil, err
			}
		}
		for _, f := range files {
			if strings.HasPrefix(f.Path, "usr/share/ca-certificates/") {
				continue // only the bundle goes into the image
			}
			e := entry{Path: f.Path, Mode: f.Mode, Link: f.Link, Data: f.Data}
			if e.Link == "" && e.Data == nil {
				e.Data = []byte{}
			}
			if err := l.add(e); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", p.Name, err)
			}
			have[f.Path] = true
		}
		if err := l.add(entry{Path: "var/lib/dpkg/status.d/" + p.Name, Mode: 0o644, Data: control}); err != nil {
			return nil, nil, err
		}
		debs = append(debs, sbomDeb{Pkg: p})
	}
	u := strconv.Itoa(nonrootUID)
	for _, e := range []entry{
		{Path: "etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:" + u + ":" + u + ":nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnogroup:x:65534:\nnonroot:x:" + u + ":\n")},
		// Go's resolver reads this; without it glibc-based plugins would still prefer /etc/hosts first.
		{Path: "etc/nsswitch.conf", Mode: 0o644, Data: []byte("hosts: files dns\n")},
		{Path: "home/nonroot", Mode: 0o700, UID: nonrootUID, GID: nonrootUID, Dir: true},
		{Path: "root", Mode: 0o700, Dir: true},
		{Path: "tmp", Mode: 0o1777, Dir: true},
	} {
		if err := l.add(e); err != nil {
			return nil, nil, err
		}
	}
	return l, debs, nil
}

// appLayer: the webhook, every plugin binary, the profiles and (added by the caller) the SBOM. It refuses binaries
// the base layer cannot run and an image profile naming a binary the image lacks.
func appLayer(o buildOptions, base *layerFS) (*layerFS, []sbomBinary, error) {
	l := newLayerFS()
	var bins []sbomBinary
	addBin := func(src, dst string) error {
		interp, libs, err := elfDeps(src)
		if err != nil {
			return err
		}
		if interp != "" {
			for _, need := range append([]string{interp}, libs...) {
				if !base.provides(need) {
					return fmt.Errorf("%s needs %s, which the base layer does not provide", src, need)
				}
			}
		}
		sum, err := fileSHA256(src)
		if err != nil {
			return err
		}
		bins = append(bins, sbomBinary{ImagePath: "/" + dst, File: src, SHA256: sum})
		return l.add(entry{Path: dst, Mode: 0o755, Src: src})
	}
	if err := addBin(filepath.Join(o.Bin, "webhook"), "webhook"); err != nil {
		return nil, nil, err
	}
	entries, err := os.ReadDir(filepath.Join(o.Bin, "plugins"))
	if err != nil {
		return nil, nil, fmt.Errorf("plugin binaries: %w", err)
	}
	plugins := map[string]bool{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if err := addBin(filepath.Join(o.Bin, "plugins", e.Name()), "plugins/"+e.Name()); err != nil {
			return nil, nil, err
		}
		plugins["/plugins/"+e.Name()] = true
	}
	if want, err := pluginDirs(o.Root); err != nil {
		return nil, nil, err
	} else {
		for _, p := range want {
			if !plugins["/plugins/"+p] {
				return nil, nil, fmt.Errorf("%s/plugins has no %s (cmd/plugins/%s): run compile again", o.Bin, p, p)
			}
		}
	}
	for _, f := range []string{"config.yaml", imageProfile} {
		b, err := os.ReadFile(filepath.Join(o.Root, profileDir, f))
		if err != nil {
			return nil, nil, err
		}
		if f == imageProfile {
			paths, err := profilePaths(b)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", f, err)
			}
			for _, p := range paths {
				if !plugins[p] {
					return nil, nil, fmt.Errorf("%s names %s, which is not a plugin binary of the image", f, p)
				}
			}
		}
		if err := l.add(entry{Path: profileDir + "/" + f, Mode: 0o644, Data: b}); err != nil {
			return nil, nil, err
		}
	}
	sort.Slice(bins, func(i, j int) bool { return bins[i].ImagePath < bins[j].ImagePath })
	return l, bins, nil
}

// provides reports whether an absolute path (the loader) or a library soname exists in the layer. Sonames are
// looked up in the directories the Debian loader searches by default.
func (l *layerFS) provides(need string) bool {
	cands := []string{need}
	if !strings.HasPrefix(need, "/") {
		cands = []string{"lib/x86_64-linux-gnu/" + need, "usr/lib/x86_64-linux-gnu/" + need, "lib/" + need, "usr/lib/" + need}
	}
	for _, c := range cands {
		c = strings.TrimPrefix(path.Clean("/"+c), "/")
		for range 8 { // follow symlinks, bounded
			e, ok := l.entries[c]
			if !ok {
				break
			}
			if e.Link == "" {
				return !e.Dir
			}
			if strings.HasPrefix(e.Link, "/") {
				c = strings.TrimPrefix(path.Clean(e.Link), "/")
			} else {
				c = path.Join(path.Dir(c), e.Link)
			}
		}
	}
	return false
}

// profilePaths returns the plugin paths an OpenKCM profile names (plugins[].path).
func profilePaths(b []byte) ([]string, error) {
	var p struct {
		Plugins []struct {
			Name string `yaml:"name"`
			Path string `yaml:"path"`
		} `yaml:"plugins"`
	}
	if err := yaml.Unmarshal(b, &p); err != nil {
		return nil, err
	}
	if len(p.Plugins) == 0 {
		return nil, errors.New("no plugins")
	}
	var out []string
	for _, e := range p.Plugins {
		if !strings.HasPrefix(e.Path, "/plugins/") {
			return nil, fmt.Errorf("plugin %s: path %q, want /plugins/<binary>", e.Name, e.Path)
		}
		out = append(out, e.Path)
	}
	return out, nil
}

func fileSHA256(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
