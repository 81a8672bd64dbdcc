package plugintest

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildMu    sync.Mutex
	buildDir   string
	buildOnces = map[string]*buildResult{}
)

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// BuildPlugin builds the main package pkg (an import path inside this
// module, e.g. "github.com/apeirora/apeiro-cmk/cmd/plugins/keystore-local")
// once per test process and returns the binary path. Concurrent and repeated
// calls share the build. buildFlags are passed to `go build` (e.g. "-race").
func BuildPlugin(t testing.TB, pkg string, buildFlags ...string) string {
	t.Helper()
	key := pkg + "\x00" + strings.Join(buildFlags, "\x00")

	buildMu.Lock()
	if buildDir == "" {
		dir, err := os.MkdirTemp("", "apeiro-plugintest-")
		if err != nil {
			buildMu.Unlock()
			t.Fatalf("plugintest: temp dir: %v", err)
		}
		buildDir = dir
	}
	r, ok := buildOnces[key]
	if !ok {
		r = &buildResult{}
		buildOnces[key] = r
	}
	dir := buildDir
	n := len(buildOnces)
	buildMu.Unlock()

	r.once.Do(func() {
		out := filepath.Join(dir, fmt.Sprintf("%s-%d", path.Base(pkg), n))
		if runtime.GOOS == "windows" {
			out += ".exe"
		}
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		args := append([]string{"build", "-o", out}, buildFlags...)
		args = append(args, pkg)
		// A progress line: building a plugin binary takes a while on a busy machine.
		fmt.Fprintf(os.Stderr, "plugintest: building %s ...\n", pkg)
		start := time.Now()
		cmd := exec.Command(goBin, args...)
		cmd.Env = os.Environ()
		combined, err := cmd.CombinedOutput()
		if err != nil {
			r.err = fmt.Errorf("go build %s: %w\n%s", pkg, err, combined)
			return
		}
		fmt.Fprintf(os.Stderr, "plugintest: built %s in %s\n", pkg, time.Since(start).Round(time.Millisecond))
		r.path = out
	})
	if r.err != nil {
		t.Fatalf("plugintest: %v", r.err)
	}
	return r.path
}

// Main runs the tests and removes the binaries BuildPlugin produced:
//
//	func TestMain(m *testing.M) { plugintest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// Cleanup removes the build directory; later BuildPlugin calls rebuild.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	buildDir = ""
	buildOnces = map[string]*buildResult{}
}
