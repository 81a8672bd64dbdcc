package host_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	notificationv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
)

type fakeOps struct {
	operationsv1.UnimplementedKeystoreInstanceKeyOperationServer
	name string
}

func (f *fakeOps) ExtractKeyRegion(context.Context, *operationsv1.ExtractKeyRegionRequest) (*operationsv1.ExtractKeyRegionResponse, error) {
	return &operationsv1.ExtractKeyRegionResponse{Region: f.name}, nil
}

// fakeMgmt records the YAML it was configured with.
type fakeMgmt struct {
	managementv1.UnimplementedKeystoreProviderServer
	configv1.UnimplementedConfigServer
	yaml *string
}

func (f *fakeMgmt) Configure(_ context.Context, r *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	*f.yaml = r.GetYamlConfiguration()
	return &configv1.ConfigureResponse{}, nil
}

func notif(name string) catalog.BuiltInPlugin {
	return catalog.MakeBuiltIn(name, notificationv1.NotificationServicePluginServer(&notificationv1.UnimplementedNotificationServiceServer{}))
}

func ops(name string) catalog.BuiltInPlugin {
	return catalog.MakeBuiltIn(name, operationsv1.KeystoreInstanceKeyOperationPluginServer(&fakeOps{name: name}))
}

func load(t *testing.T, cfg host.Config) *host.Plugins {
	t.Helper()
	p, err := host.Load(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestDefaultKeystoreSelection(t *testing.T) {
	builtins := []catalog.BuiltInPlugin{ops("A"), ops("B"), ops("C")}
	entry := func(name string, tags ...string) catalog.PluginConfig {
		return catalog.PluginConfig{Name: name, Type: host.TypeKeyOperations, Tags: tags}
	}
	tests := []struct {
		name    string
		entries []catalog.PluginConfig
		want    string
		wantErr error
	}{
		{"one default, case-insensitive", []catalog.PluginConfig{entry("A", "hyok"), entry("B", "DEFAULT_KEYSTORE")}, "B", nil},
		{"none", []catalog.PluginConfig{entry("A"), entry("B", "hyok")}, "", host.ErrNoDefaultKeystore},
		{"several", []catalog.PluginConfig{entry("A", "default_keystore"), entry("C", "default_keystore")}, "", host.ErrMultipleDefaultKeystores},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := load(t, host.Config{Plugins: tt.entries, BuiltIns: builtins})
			name, client, err := p.DefaultKeystore()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if name != tt.want {
				t.Fatalf("default = %q, want %q", name, tt.want)
			}
			resp, err := client.ExtractKeyRegion(context.Background(), &operationsv1.ExtractKeyRegionRequest{})
			if err != nil || resp.GetRegion() != tt.want {
				t.Fatalf("default client is not %q: %v %v", tt.want, resp, err)
			}
		})
	}
}

func TestAccessorsNotConfigured(t *testing.T) {
	p := load(t, host.Config{
		Plugins:  []catalog.PluginConfig{{Name: "A", Type: host.TypeKeyOperations, Tags: []string{"hyok"}}},
		BuiltIns: []catalog.BuiltInPlugin{ops("A")},
	})
	checks := map[string]error{}
	_, checks["identity"] = p.Identity()
	_, checks["cert"] = p.CertificateIssuer()
	_, checks["notification"] = p.Notification()
	_, checks["sis"] = p.SystemInformation()
	_, checks["mgmt"] = p.KeystoreManagement("A")
	_, checks["ops other"] = p.KeyOperations("B")
	for what, err := range checks {
		if !errors.Is(err, host.ErrNotConfigured) {
			t.Errorf("%s: err = %v, want ErrNotConfigured", what, err)
		}
	}
	if _, err := p.KeyOperations("A"); err != nil {
		t.Fatal(err)
	}
	if got := p.HYOKKeystores(); len(got) != 1 || got[0] != "A" {
		t.Fatalf("HYOKKeystores = %v", got)
	}
	if err := p.CheckAllHealth(context.Background()); err != nil {
		t.Fatalf("builtin health (Unimplemented counts as healthy): %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  host.Config
		want string
	}{
		{"unknown type", host.Config{Plugins: []catalog.PluginConfig{{Name: "X", Type: "IdentityManagement"}}}, "unsupported plugin type"},
		{"missing builtin", host.Config{Plugins: []catalog.PluginConfig{{Name: "X", Type: host.TypeKeyOperations}}}, `builtin plugin "X" not found`},
		{"MaybeOne violated", host.Config{
			Plugins:  []catalog.PluginConfig{{Name: "N1", Type: host.TypeNotification}, {Name: "N2", Type: host.TypeNotification}},
			BuiltIns: []catalog.BuiltInPlugin{notif("N1"), notif("N2")},
		}, `expected at most 1 but got 2`},
		{"missing name", host.Config{Plugins: []catalog.PluginConfig{{Type: host.TypeNotification}}}, "missing name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := host.Load(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want containing %q", err, tt.want)
			}
		})
	}
}

func TestSupportedRegionsInjected(t *testing.T) {
	var got string
	mgmt := &fakeMgmt{yaml: &got}
	load(t, host.Config{
		Plugins: []catalog.PluginConfig{{Name: "A", Type: host.TypeKeystoreManagement, YamlConfiguration: "foo: bar\n"}},
		BuiltIns: []catalog.BuiltInPlugin{catalog.MakeBuiltIn("A",
			managementv1.KeystoreProviderPluginServer(mgmt), configv1.ConfigServiceServer(mgmt))},
		SupportedRegions: []host.SupportedRegion{{Name: "eu", TechnicalName: "eu-central-1"}},
	})
	// Byte for byte what CMK (openkcm/cmk 788ec3c, plugin_config_merge.go)
	// passes to Configure: a full common-sdk SourceRef re-encoded by yaml.v3.
	want := `foo: bar
supportedregions:
    source: embedded
    env: ""
    file:
        path: ""
        format: ""
        jsonPath: ""
    value: '{"regions":[{"name":"eu","technicalName":"eu-central-1"}]}'
`
	if got != want {
		t.Fatalf("merged YAML differs from CMK's:\n got: %q\nwant: %q", got, want)
	}
}

func TestParseProfile(t *testing.T) {
	good := `
plugins:
  - name: LOCAL
    type: KeystoreInstanceKeyOperation
    path: bin/plugins/keystore-local
    args: [operations]
    env: {A: b}
    logLevel: debug
    tags: [default_keystore]
    yamlConfiguration: |
      dir: /var/lib/keys
  - name: LOCAL
    type: KeystoreProvider
    YamlConfiguration: ""
  - name: OFF
    type: NotificationService
    disabled: true
`
	cfgs, err := host.ParseProfile([]byte(good), host.WithBaseDir("/opt/apeiro"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfgs) != 3 {
		t.Fatalf("got %d entries", len(cfgs))
	}
	c := cfgs[0]
	if c.Path != "/opt/apeiro/bin/plugins/keystore-local" || c.Args[0] != "operations" || c.Env["A"] != "b" ||
		c.LogLevel != "debug" || c.Tags[0] != "default_keystore" || c.YamlConfiguration != "dir: /var/lib/keys\n" {
		t.Fatalf("entry 0 = %+v", c)
	}
	if cfgs[1].Path != "" || !cfgs[2].Disabled {
		t.Fatalf("entries 1/2 = %+v %+v", cfgs[1], cfgs[2])
	}

	bad := map[string]string{
		"unknown key":      "plugins:\n- name: A\n  type: NotificationService\n  colour: red\n",
		"unknown top key":  "plugins:\n- name: A\n  type: NotificationService\nother: 1\n",
		"missing type":     "plugins:\n- name: A\n",
		"unknown type":     "plugins:\n- name: A\n  type: Notification\n",
		"missing name":     "plugins:\n- type: NotificationService\n",
		"duplicate":        "plugins:\n- {name: A, type: NotificationService}\n- {name: A, type: NotificationService}\n",
		"bad checksum":     "plugins:\n- {name: A, type: NotificationService, path: x, checksum: abc}\n",
		"bad yaml config":  "plugins:\n- name: A\n  type: NotificationService\n  yamlConfiguration: \"a: [\"\n",
		"yaml config map":  "plugins:\n- name: A\n  type: NotificationService\n  yamlConfiguration: {a: b}\n",
		"args for builtin": "plugins:\n- {name: A, type: NotificationService, args: [x]}\n",
		"empty":            "plugins: []\n",
		"not yaml":         "plugins: [",
		"bad log level":    "plugins:\n- {name: A, type: NotificationService, logLevel: loud}\n",
	}
	for name, in := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := host.ParseProfile([]byte(in)); err == nil {
				t.Fatalf("accepted %q", in)
			} else {
				t.Log(err)
			}
		})
	}
}

func TestLoadProfileFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte("plugins:\n- {name: A, type: KeystoreInstanceKeyOperation, path: rel/bin}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgs, err := host.LoadProfile(path)
	if err != nil || cfgs[0].Path != "rel/bin" {
		t.Fatalf("%v %+v", err, cfgs)
	}
	if _, err := host.LoadProfile(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}
