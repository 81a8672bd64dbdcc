// Package image_test builds the container image with hack/image (its own Go module, so `go test ./...` at the root
// does not see it) twice from the same binaries and pinned Debian packages, and checks that the digests are equal,
// that the docker archive loads with go-containerregistry (through the builder's verify subcommand) and holds what
// the deployment expects, that every binary starts inside the unpacked image, and that bad inputs are refused.
package image_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apeirora/apeiro-cmk/internal/testpeers"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
)

const epoch = "1700000000"

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// run runs a command and returns its stdout; stderr is logged only when it fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = &cmdError{err: err, stderr: stderr.String()}
	}
	return stdout.String(), err
}

type cmdError struct {
	err    error
	stderr string
}

func (e *cmdError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }

func mustRun(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// sha returns the hex SHA-256 of a file ("" and the error when it cannot be read; safe in goroutines).
func sha(file string) (string, error) {
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

type report struct {
	Digest, ImageID, User string
	Entrypoint            []string
	Labels                map[string]string
	Plugins               []string
	ProfilePaths          []string
	SbomGoModules         []string
	SbomDebs              []string
	Ran                   []string
	Problems              []string
}

func TestImage(t *testing.T) {
	debs := testpeers.Env(t, "APEIRO_IMAGE_DEBS", "run `make image-debs` (Debian packages of the image's base layer)")
	root := repoRoot(t)
	tmp := t.TempDir()
	builder := filepath.Join(tmp, "image-builder")
	mustRun(t, filepath.Join(root, "hack", "image"), []string{"GOFLAGS=-mod=readonly"}, "go", "build", "-o", builder, ".")
	t.Run("unit", func(t *testing.T) {
		mustRun(t, filepath.Join(root, "hack", "image"), []string{"GOFLAGS=-mod=readonly"}, "go", "test", "-count=1", ".")
	})

	// One compile: the binaries are inputs of the image; Go builds them reproducibly (-trimpath, empty build ID).
	bin := filepath.Join(tmp, "bin")
	start := time.Now()
	mustRun(t, root, nil, builder, "compile", "-root", root, "-out", bin)
	t.Logf("compile: %s", time.Since(start).Round(time.Second))
	buildArgs := func(out string) []string {
		return []string{"build", "-root", root, "-bin", bin, "-debs", debs, "-out", out, "-tag", "ghcr.io/apeirora/apeiro-cmk:test",
			"-version", "0.0.0-test", "-revision", "0123456789abcdef", "-source-date-epoch", epoch,
			// The fastest level: the test is about equal outputs; make image keeps the default level.
			"-gzip-level", "1"}
	}
	// Both builds at once: they share nothing but their inputs, and on two cores this halves the wait.
	digests, tars, sboms := make([]string, 2), make([]string, 2), make([]string, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	start = time.Now()
	for i := range 2 {
		wg.Go(func() {
			out := filepath.Join(tmp, "out", string(rune('a'+i)))
			d, err := run(t, root, nil, builder, buildArgs(out)...)
			if err != nil {
				errs[i] = err
				return
			}
			digests[i] = strings.TrimSpace(d)
			if tars[i], errs[i] = sha(filepath.Join(out, "apeiro-cmk.tar")); errs[i] == nil {
				sboms[i], errs[i] = sha(filepath.Join(out, "apeiro-cmk.spdx.json"))
			}
		})
	}
	wg.Wait()
	t.Logf("two builds: %s", time.Since(start).Round(time.Second))
	for i, err := range errs {
		if err != nil {
			t.Fatalf("build %d: %v", i+1, err)
		}
		if !strings.HasPrefix(digests[i], "sha256:") {
			t.Fatalf("build %d printed %q, want a digest", i+1, digests[i])
		}
	}
	if digests[0] != digests[1] || tars[0] != tars[1] || sboms[0] != sboms[1] {
		t.Fatalf("two builds from the same inputs differ: digests %v, archives %v, SBOMs %v", digests, tars, sboms)
	}

	out := filepath.Join(tmp, "out", "a")
	args := []string{"verify", "-tar", filepath.Join(out, "apeiro-cmk.tar"), "-oci", filepath.Join(out, "oci")}
	asRoot := os.Geteuid() == 0
	if asRoot {
		args = append(args, "-exec", filepath.Join(tmp, "unpacked"))
	}
	js, err := run(t, root, nil, builder, args...)
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, js)
	}
	var r report
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatalf("verify output: %v\n%s", err, js)
	}
	if r.Digest != digests[0] || !strings.HasPrefix(r.ImageID, "sha256:") {
		t.Errorf("OCI layout digest %s (image ID %s), build printed %s", r.Digest, r.ImageID, digests[0])
	}
	if r.User != "65532:65532" || !slices.Equal(r.Entrypoint, []string{"/webhook"}) {
		t.Errorf("user %q entrypoint %v", r.User, r.Entrypoint)
	}
	if r.Labels["org.opencontainers.image.revision"] != "0123456789abcdef" || r.Labels["org.opencontainers.image.version"] != "0.0.0-test" ||
		r.Labels["org.opencontainers.image.source"] != "https://github.com/apeirora/apeiro-cmk" {
		t.Errorf("labels %v", r.Labels)
	}
	// Every plugin command ships, and every path the image profile names is one of them.
	cmds, err := os.ReadDir(filepath.Join(root, "cmd", "plugins"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range cmds {
		want = append(want, "/plugins/"+c.Name())
	}
	if !slices.Equal(r.Plugins, want) {
		t.Errorf("plugins in the image %v, want %v", r.Plugins, want)
	}
	for _, p := range r.ProfilePaths {
		if !slices.Contains(r.Plugins, p) {
			t.Errorf("config.image.yaml names %s, which the image lacks", p)
		}
	}
	if !slices.Contains(r.SbomGoModules, "github.com/openkcm/plugin-sdk@v0.14.0") {
		t.Errorf("the SBOM does not list github.com/openkcm/plugin-sdk v0.14.0: %v", r.SbomGoModules)
	}
	if len(r.SbomDebs) != 2 || !strings.HasPrefix(r.SbomDebs[0], "ca-certificates@") || !strings.HasPrefix(r.SbomDebs[1], "libc6@") {
		t.Errorf("Debian packages in the SBOM: %v", r.SbomDebs)
	}
	if asRoot {
		// The webhook and the Thales plugin are dynamically linked (cgo): starting them proves the base layer's
		// loader and C library work; the static plugins prove nothing else is needed.
		if want := append([]string{"/webhook"}, r.Plugins...); !slices.Equal(r.Ran, want) {
			t.Errorf("started in the image: %v, want %v", r.Ran, want)
		}
	} else {
		t.Log("not root: binaries were not started inside the unpacked image (chroot)")
	}

	// kind load image-archive runs containerd's importer (ctr images import) on the node: the real consumer.
	t.Run("containerd import", func(t *testing.T) {
		containerdImport(t, filepath.Join(out, "apeiro-cmk.tar"), "ghcr.io/apeirora/apeiro-cmk:test", r.ImageID)
	})

	// Bad inputs: each is refused with a message naming the problem, and nothing is written.
	t.Run("bad input", func(t *testing.T) {
		tamperedDebs := filepath.Join(tmp, "debs-tampered")
		copyDir(t, debs, tamperedDebs)
		libc, _ := filepath.Glob(filepath.Join(tamperedDebs, "libc6_*.deb"))
		if len(libc) != 1 {
			t.Fatalf("libc6 .deb in %s: %v", debs, libc)
		}
		f, err := os.OpenFile(libc[0], os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.Write([]byte{0})
		f.Close()

		partial := filepath.Join(tmp, "bin-partial")
		linkTree(t, bin, partial, "plugins/keystore-aws")

		fakeRoot := filepath.Join(tmp, "root-bad-profile")
		for _, c := range cmds {
			if err := os.MkdirAll(filepath.Join(fakeRoot, "cmd", "plugins", c.Name()), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		copyDir(t, filepath.Join(root, "profiles", "apeiro-profile"), filepath.Join(fakeRoot, "profiles", "apeiro-profile"))
		prof := filepath.Join(fakeRoot, "profiles", "apeiro-profile", "config.image.yaml")
		b, err := os.ReadFile(prof)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(prof, bytes.Replace(b, []byte("path: /plugins/keystore-aws"), []byte("path: /plugins/keystore-gone"), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		lock := filepath.Join(root, "hack", "image", "debian.lock")

		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"tampered package", []string{"-debs", tamperedDebs}, "refusing"},
			{"missing plugin binary", []string{"-bin", partial}, "has no keystore-aws"},
			{"profile names a missing binary", []string{"-root", fakeRoot, "-lock", lock}, "names /plugins/keystore-gone"},
			{"no SOURCE_DATE_EPOCH", []string{"-source-date-epoch", ""}, "SOURCE_DATE_EPOCH"},
			{"negative epoch", []string{"-source-date-epoch", "-5"}, "SOURCE_DATE_EPOCH"},
			{"bad tag", []string{"-tag", "ghcr.io/Upper/Case:x"}, "-tag"},
			{"multi-line version", []string{"-version", "1\nINJECTED=1"}, "one line"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				o := filepath.Join(tmp, "out-bad", strings.ReplaceAll(tc.name, " ", "-"))
				_, err := run(t, root, nil, builder, append(buildArgs(o), tc.args...)...)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.want)
				}
				if _, err := os.Stat(filepath.Join(o, "apeiro-cmk.tar")); err == nil {
					t.Fatal("a refused build wrote an archive")
				}
			})
		}
	})
}

// TestImageProfileMatchesExternal keeps config.image.yaml equal to config.external.yaml except for the plugin
// paths (/plugins/<binary> instead of bin/plugins/<binary>).
func TestImageProfileMatchesExternal(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "profiles", "apeiro-profile")
	ext, err := host.LoadProfile(filepath.Join(dir, "config.external.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := host.LoadProfile(filepath.Join(dir, "config.image.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ext) != len(img) {
		t.Fatalf("config.external.yaml has %d entries, config.image.yaml %d", len(ext), len(img))
	}
	for i := range ext {
		want := ext[i]
		want.Path = "/plugins/" + filepath.Base(ext[i].Path)
		got, _ := json.Marshal(img[i])
		exp, _ := json.Marshal(want)
		if !bytes.Equal(got, exp) {
			t.Errorf("entry %d:\n got %s\nwant %s", i, got, exp)
		}
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// linkTree hard-links the files of src into dst (cheap for large binaries), leaving out skip.
func linkTree(t *testing.T, src, dst, skip string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == skip {
			return nil
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		return os.Link(p, filepath.Join(dst, rel))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// containerdImport starts a private containerd (own root, state and socket; the CRI plugin off), imports the
// archive the way kind does (--all-platforms --digests; without unpacking, which needs a snapshotter mount) and
// checks that the image is listed under ref with the config the builder wrote.
func containerdImport(t *testing.T, archive, ref, imageID string) {
	containerd := testpeers.Command(t, "containerd", "run `make image-containerd` (Debian containerd)")
	ctr := testpeers.Command(t, "ctr", "run `make image-containerd` (Debian containerd)")
	if os.Geteuid() != 0 {
		testpeers.Missing(t, "containerd needs root")
	}
	// A short directory: the socket path must stay under the 108-byte limit of unix sockets.
	dir, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "containerd.sock")
	cfg := "version = 2\nroot = \"" + dir + "/root\"\nstate = \"" + dir + "/state\"\n" +
		"disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.snapshotter.v1.aufs\"]\n" +
		"[grpc]\n  address = \"" + sock + "\"\n[ttrpc]\n  address = \"" + sock + ".ttrpc\"\n[debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n"
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(containerd, "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := run(t, "", nil, ctr, "--address", sock, "version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer within 20s:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustRun(t, "", nil, ctr, "--address", sock, "-n", "k8s.io", "images", "import", "--all-platforms", "--digests", "--no-unpack", archive)
	list := mustRun(t, "", nil, ctr, "--address", sock, "-n", "k8s.io", "images", "ls")
	var manifest string
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == ref {
			manifest = f[2]
		}
	}
	if manifest == "" {
		t.Fatalf("containerd does not list %s after the import:\n%s", ref, list)
	}
	// containerd writes a manifest for the archive (it has none); the config inside must be ours.
	raw := mustRun(t, "", nil, ctr, "--address", sock, "-n", "k8s.io", "content", "get", manifest)
	var m struct {
		Config struct{ Digest string } `json:"config"`
	}
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("manifest %s: %v", manifest, err)
	}
	if m.Config.Digest != imageID {
		t.Fatalf("containerd's image config %s, the builder's %s", m.Config.Digest, imageID)
	}
}
