package cmkcompat

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/openkcm/plugin-sdk/pkg/catalog"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
)

// Load loads plugin configurations the way CMK's registry does at start-up:
// supportedregions merged into every KeystoreProvider's YAML, one catalog,
// and every plugin configured. The catalog is closed at test cleanup.
func Load(t testing.TB, cfg host.Config) *host.Plugins {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := host.Load(ctx, cfg)
	if err != nil {
		t.Fatalf("loading the plugin set as CMK does: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// CheckOneFailureFailsLoad breaks the configuration of each plugin of cfg in
// turn (invalid YAML) and checks that the whole load fails with an error
// naming that plugin, as in CMK, where the registry then runs with no
// plugins at all. This is why a plugin must never refuse what CMK itself
// adds to its configuration.
func CheckOneFailureFailsLoad(t *testing.T, cfg host.Config) {
	t.Helper()
	for i, pc := range cfg.Plugins {
		if pc.Disabled {
			continue
		}
		t.Run(pc.Type+"/"+pc.Name, func(t *testing.T) {
			broken := cfg
			broken.Plugins = append([]catalog.PluginConfig(nil), cfg.Plugins...)
			broken.Plugins[i].YamlConfiguration = "cmkcompat: [this is not YAML\n"
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			p, err := host.Load(ctx, broken)
			if err == nil {
				_ = p.Close()
				t.Fatalf("the set loaded although %s/%s has invalid YAML", pc.Type, pc.Name)
			}
			if !strings.Contains(err.Error(), pc.Name) {
				t.Fatalf("load error does not name the failing plugin %q: %v", pc.Name, err)
			}
		})
	}
}
