package plugintest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
)

// ConfigCheck describes the configuration contract every plugin suite verifies: what Configure("") must do and
// how invalid YAML is rejected.
type ConfigCheck struct {
	// Spec returns the load spec for a given yamlConfiguration.
	Spec func(yaml string) Spec
	// Optional: Configure("") must succeed. Otherwise it must fail inside Configure, mentioning EmptyMessage if set.
	Optional     bool
	EmptyMessage string
	// InvalidYAML must fail inside Configure, mentioning InvalidYAMLMessage if set.
	InvalidYAML        string
	InvalidYAMLMessage string
}

// CheckConfigLifecycle runs the subtests configure-empty and invalid-yaml in one load mode. The host wraps a
// Configure error as "failed to configure plugin", which is how CMK reports it at start-up.
func CheckConfigLifecycle(t *testing.T, c ConfigCheck, mode Mode) {
	t.Run("configure-empty", func(t *testing.T) {
		_, err := TryLoad(t, c.Spec(""), mode)
		switch {
		case c.Optional && err != nil:
			t.Fatalf("Configure(\"\") must succeed for optional configuration: %v", err)
		case !c.Optional && err == nil:
			t.Fatal("Configure(\"\") accepted though the configuration is declared required")
		case !c.Optional && !strings.Contains(err.Error(), "failed to configure plugin"):
			t.Fatalf("Configure(\"\") must fail in Configure, got: %v", err)
		case !c.Optional && c.EmptyMessage != "" && !strings.Contains(err.Error(), c.EmptyMessage):
			t.Fatalf("Configure(\"\") error %q does not mention %q", err, c.EmptyMessage)
		}
	})
	t.Run("invalid-yaml", func(t *testing.T) {
		_, err := TryLoad(t, c.Spec(c.InvalidYAML), mode)
		if err == nil {
			t.Fatalf("invalid YAML %q was accepted", c.InvalidYAML)
		}
		if !strings.Contains(err.Error(), "failed to configure plugin") {
			t.Fatalf("invalid YAML must fail in Configure, got: %v", err)
		}
		if c.InvalidYAMLMessage != "" && !strings.Contains(err.Error(), c.InvalidYAMLMessage) {
			t.Fatalf("error %q does not mention %q", err, c.InvalidYAMLMessage)
		}
	})
}

// CheckReconfigureUnderLoad re-sends the loaded plugin's own configuration through the Config service while
// several goroutines keep calling rpc: every call must keep succeeding, because the proto requires Configure to be
// safe concurrently with other RPCs (CMK may reconfigure at runtime).
func CheckReconfigureUnderLoad(t *testing.T, l *Loaded, rpc func(ctx context.Context) error) {
	t.Helper()
	cfg, err := l.ConfigClient(l.Spec.Type, l.Spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	wg.Go(func() {
		for range 10 {
			if _, err := cfg.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: l.Spec.YAML}); err != nil {
				errs <- fmt.Errorf("Configure: %w", err)
				return
			}
		}
	})
	for range 4 {
		wg.Go(func() {
			for range 10 {
				if err := rpc(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("during runtime reconfiguration: %v", err)
	}
}
