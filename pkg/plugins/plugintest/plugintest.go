// Package plugintest is the harness behind every plugin contract suite. It
// loads one plugin through the real plugin-sdk catalog (via package host) in
// either of the two ways CMK can load it, so a suite written once checks both:
//
//   - builtin: catalog.MakeBuiltIn in-process, over the SDK's in-memory gRPC pipe;
//   - external: the plugin's main package is built once per test process
//     (BuildPlugin) and started as a go-plugin child process, gRPC over AutoMTLS.
//
// A suite describes the plugin with a Spec and runs its checks in both modes:
//
//	spec := plugintest.Spec{
//		Type:    host.TypeKeyOperations,
//		Name:    "LOCAL",
//		YAML:    "dir: /tmp/keys",
//		BuiltIn: func() catalog.BuiltInPlugin { return local.NewOperationsBuiltIn("LOCAL") },
//		Package: "github.com/apeirora/apeiro-cmk/cmd/plugins/keystore-local",
//		Args:    []string{"operations"},
//	}
//	plugintest.ForEachMode(t, spec, func(t *testing.T, p *host.Plugins) {
//		ops, err := p.KeyOperations("LOCAL")
//		...
//	})
//
// Every load registers t.Cleanup to close the catalog. For lifecycle checks use
// Load / TryLoad, then CheckHealth (go-plugin's gRPC health service must answer
// SERVING for service "plugin", which is what CMK's plugin watcher calls) and
// CheckShutdown (Close returns and the child process is gone).
//
// Binaries go to a per-process temp directory; call plugintest.Main from
// TestMain to remove it afterwards. APEIRO_PLUGINTEST_MODES=builtin (or
// external) restricts the modes for quick local iteration; it is ignored when
// CI=true. APEIRO_PLUGINTEST_LOG=debug shows catalog and plugin logs.
package plugintest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/openkcm/plugin-sdk/pkg/catalog"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
)

// Mode is how a plugin is loaded.
type Mode string

const (
	ModeBuiltin  Mode = "builtin"
	ModeExternal Mode = "external"
)

// Spec describes the plugin under test.
type Spec struct {
	// Type is the plugin type (host.Type*), Name the profile name.
	Type string
	Name string
	// YAML is the yamlConfiguration ("" = none, so Configure("") is sent).
	YAML string
	Tags []string

	// BuiltIn returns a fresh builtin (a factory, so loads share no state).
	// Nil disables builtin mode.
	BuiltIn func() catalog.BuiltInPlugin

	// Package is the import path of the plugin's main package, built with
	// BuildPlugin for external mode. Binary, if set, is used instead.
	// Both empty disables external mode.
	Package string
	Binary  string
	// Args and Env are passed to the external process.
	Args []string
	Env  map[string]string

	// SupportedRegions is injected into KeystoreProvider YAML as CMK does.
	SupportedRegions []host.SupportedRegion
	// SkipRequestValidation disables the host's protovalidate check so a
	// suite sees what the plugin does with an invalid request.
	SkipRequestValidation bool
}

// Modes lists the modes spec supports (honouring APEIRO_PLUGINTEST_MODES).
func (s Spec) Modes() []Mode {
	var modes []Mode
	if s.BuiltIn != nil {
		modes = append(modes, ModeBuiltin)
	}
	if s.Package != "" || s.Binary != "" {
		modes = append(modes, ModeExternal)
	}
	only := os.Getenv("APEIRO_PLUGINTEST_MODES")
	if only == "" || os.Getenv("CI") == "true" {
		return modes
	}
	var out []Mode
	for _, m := range modes {
		if strings.Contains(only, string(m)) {
			out = append(out, m)
		}
	}
	return out
}

// Loaded is a plugin loaded by the harness.
type Loaded struct {
	*host.Plugins
	Mode Mode
	Spec Spec
	// Binary is the executable in external mode.
	Binary string

	marker string
}

// ForEachMode runs fn as subtest "builtin" and "external", each with a
// freshly loaded plugin (closed by t.Cleanup).
func ForEachMode(t *testing.T, spec Spec, fn func(t *testing.T, p *host.Plugins)) {
	t.Helper()
	ForEachModeLoaded(t, spec, func(t *testing.T, l *Loaded) { fn(t, l.Plugins) })
}

// ForEachModeLoaded is ForEachMode handing over the *Loaded (mode, binary).
func ForEachModeLoaded(t *testing.T, spec Spec, fn func(t *testing.T, l *Loaded)) {
	t.Helper()
	modes := spec.Modes()
	if len(modes) == 0 {
		t.Fatalf("plugintest: spec %s/%s has neither BuiltIn nor Package/Binary (or APEIRO_PLUGINTEST_MODES excludes both)", spec.Type, spec.Name)
	}
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			fn(t, Load(t, spec, m))
		})
	}
}

// Load loads spec in mode and fails the test on error.
func Load(t testing.TB, spec Spec, mode Mode) *Loaded {
	t.Helper()
	l, err := TryLoad(t, spec, mode)
	if err != nil {
		t.Fatalf("plugintest: loading %s %q (%s): %v", spec.Type, spec.Name, mode, err)
	}
	return l
}

// TryLoad loads spec in mode and returns the load error (e.g. to check that
// invalid YAML is rejected). On success Close is registered with t.Cleanup.
func TryLoad(t testing.TB, spec Spec, mode Mode) (*Loaded, error) {
	t.Helper()
	set, err := TryLoadSet(t, mode, spec)
	if err != nil {
		return nil, err
	}
	return set[0], nil
}

// TryLoadSet loads several plugins into one catalog (e.g. the management and
// operations plugins of one keystore backend, as CMK loads them). The
// returned Loaded share one *host.Plugins; closing one closes all.
func TryLoadSet(t testing.TB, mode Mode, specs ...Spec) ([]*Loaded, error) {
	t.Helper()
	var cfg host.Config
	loaded := make([]*Loaded, 0, len(specs))
	for i, spec := range specs {
		c, l, err := Config(t, spec, mode)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			cfg = c
		} else {
			cfg.Plugins = append(cfg.Plugins, c.Plugins...)
			cfg.BuiltIns = append(cfg.BuiltIns, c.BuiltIns...)
			if c.SupportedRegions != nil {
				cfg.SupportedRegions = c.SupportedRegions
			}
			cfg.SkipRequestValidation = cfg.SkipRequestValidation || c.SkipRequestValidation
		}
		loaded = append(loaded, l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := host.Load(ctx, cfg)
	if err != nil {
		return nil, err
	}
	for _, l := range loaded {
		l.Plugins = p
	}
	t.Cleanup(func() { _ = p.Close() })
	return loaded, nil
}

// LoadSet is TryLoadSet failing the test on error.
func LoadSet(t testing.TB, mode Mode, specs ...Spec) []*Loaded {
	t.Helper()
	set, err := TryLoadSet(t, mode, specs...)
	if err != nil {
		t.Fatalf("plugintest: loading %d plugins (%s): %v", len(specs), mode, err)
	}
	return set
}

// Config builds the host.Config that TryLoad uses for one spec, for suites
// that want to add companion plugins before calling host.Load themselves.
func Config(t testing.TB, spec Spec, mode Mode) (host.Config, *Loaded, error) {
	t.Helper()
	if spec.Type == "" || spec.Name == "" {
		return host.Config{}, nil, errors.New("plugintest: spec needs Type and Name")
	}
	pc := catalog.PluginConfig{
		Name:              spec.Name,
		Type:              spec.Type,
		YamlConfiguration: spec.YAML,
		Tags:              spec.Tags,
		LogLevel:          logLevel(),
	}
	loaded := &Loaded{Mode: mode, Spec: spec}
	cfg := host.Config{
		Logger:                Logger(),
		SkipRequestValidation: spec.SkipRequestValidation,
		SupportedRegions:      spec.SupportedRegions,
	}
	switch mode {
	case ModeBuiltin:
		if spec.BuiltIn == nil {
			return host.Config{}, nil, errors.New("plugintest: builtin mode needs Spec.BuiltIn")
		}
		cfg.BuiltIns = append(cfg.BuiltIns, spec.BuiltIn())
	case ModeExternal:
		bin := spec.Binary
		if bin == "" {
			if spec.Package == "" {
				return host.Config{}, nil, errors.New("plugintest: external mode needs Spec.Package or Spec.Binary")
			}
			bin = BuildPlugin(t, spec.Package)
		}
		loaded.Binary = bin
		loaded.marker = newMarker()
		pc.Path = bin
		pc.Args = spec.Args
		pc.Env = map[string]string{markerEnv: loaded.marker}
		for k, v := range spec.Env {
			pc.Env[k] = v
		}
	default:
		return host.Config{}, nil, fmt.Errorf("plugintest: unknown mode %q", mode)
	}
	cfg.Plugins = []catalog.PluginConfig{pc}
	return cfg, loaded, nil
}

// markerEnv tags each external plugin process so the harness can find it in
// /proc without confusing it with processes of parallel tests.
const markerEnv = "APEIRO_PLUGINTEST_ID"

func newMarker() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Logger is the logger the harness gives the catalog: stderr, level from
// APEIRO_PLUGINTEST_LOG (default warn). It deliberately does not log through
// testing.T: plugin processes log asynchronously, possibly after a test ended.
func Logger() *slog.Logger {
	level := slog.LevelWarn
	_ = level.UnmarshalText([]byte(logLevel()))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// logLevel is the plugin log level (hclog names): APEIRO_PLUGINTEST_LOG or warn.
func logLevel() string {
	if l := os.Getenv("APEIRO_PLUGINTEST_LOG"); l != "" {
		return strings.ToLower(l)
	}
	return "warn"
}

// CheckHealth checks the plugin's gRPC health as CMK's watcher does. In
// external mode go-plugin's health service must answer SERVING for service
// "plugin" (Unimplemented is a failure there); in builtin mode there is no
// health service, and host.CheckHealth must treat that as healthy.
func CheckHealth(t testing.TB, l *Loaded) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Plugins.CheckHealth(ctx, l.Spec.Type, l.Spec.Name); err != nil {
		t.Fatalf("health (host view, as CMK's watcher): %v", err)
	}
	conn, err := l.Conn(l.Spec.Type, l.Spec.Name)
	if err != nil {
		t.Fatalf("health: %v", err)
	}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: host.HealthService})
	switch l.Mode {
	case ModeExternal:
		if err != nil {
			t.Fatalf("health: external plugin must serve grpc.health.v1 for %q: %v", host.HealthService, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health: got %s, want SERVING", resp.GetStatus())
		}
	case ModeBuiltin:
		if err != nil && status.Code(err) != codes.Unimplemented {
			t.Fatalf("health: builtin answered %v, want SERVING or Unimplemented", err)
		}
	}
	if l.Mode == ModeExternal && len(l.Processes()) == 0 {
		t.Fatalf("health: no child process with %s=%s found", markerEnv, l.marker)
	}
}

// CheckShutdown closes the plugin and verifies Close returns promptly, RPCs
// fail afterwards and, in external mode, the child process is gone.
func CheckShutdown(t testing.TB, l *Loaded) {
	t.Helper()
	var pids []int
	if l.Mode == ModeExternal {
		pids = l.Processes()
		if len(pids) == 0 && processTrackingSupported() {
			t.Fatalf("shutdown: no child process with %s=%s before Close", markerEnv, l.marker)
		}
	}
	conn, err := l.Conn(l.Spec.Type, l.Spec.Name)
	if err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: Close: %v", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("shutdown: Close did not return within 90s")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: host.HealthService}, grpc.WaitForReady(false)); err == nil {
		t.Fatalf("shutdown: connection still answers after Close")
	}

	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for processAlive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("shutdown: plugin process %d still running after Close", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// Processes returns the PIDs of this plugin's child processes (external mode,
// Linux; nil elsewhere).
func (l *Loaded) Processes() []int {
	if l.marker == "" {
		return nil
	}
	return findChildren(markerEnv + "=" + l.marker)
}
