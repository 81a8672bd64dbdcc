// Tests for the Apeiro plugin profile: both files parse, describe the same
// plugins, and load through the real catalog — config.yaml against the
// builtins, config.external.yaml against freshly built binaries — and every
// loaded plugin answers a call.
package apeiroprofile_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	identity_managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/identity_management/v1"
	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	notificationv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"
	systeminformationv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/builtin"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/cmkcompat"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
	"github.com/apeirora/apeiro-cmk/profiles/apeiro-profile/profiletest"
)

func TestMain(m *testing.M) { plugintest.Main(m) }

const module = "github.com/apeirora/apeiro-cmk"

var regions = []host.SupportedRegion{{Name: "Europe (Frankfurt)", TechnicalName: "eu-central-1"}}

// strict: missing plugins of the other types are tolerated only until they
// exist; CI or APEIRO_REQUIRE_ALL_PLUGINS=1 turns that off.
func strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("APEIRO_REQUIRE_ALL_PLUGINS") == "1"
}

func TestProfilesDescribeTheSamePlugins(t *testing.T) {
	b, err := host.LoadProfile("config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := host.LoadProfile("config.external.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != len(e) {
		t.Fatalf("config.yaml has %d entries, config.external.yaml %d", len(b), len(e))
	}
	types := map[string]int{}
	defaults := 0
	for i := range b {
		if b[i].Path != "" {
			t.Errorf("config.yaml entry %s/%s has a path", b[i].Type, b[i].Name)
		}
		if e[i].Path == "" || filepath.Dir(e[i].Path) != "bin/plugins" {
			t.Errorf("config.external.yaml entry %s/%s: path %q, want bin/plugins/<binary>", e[i].Type, e[i].Name, e[i].Path)
		}
		if b[i].Name != e[i].Name || b[i].Type != e[i].Type || !slices.Equal(b[i].Tags, e[i].Tags) || b[i].YamlConfiguration != e[i].YamlConfiguration {
			t.Errorf("entry %d differs: %+v vs %+v", i, b[i], e[i])
		}
		types[b[i].Type]++
		if b[i].Type == host.TypeKeyOperations && host.HasTag(info(b[i]), host.TagDefaultKeystore) {
			defaults++
		}
	}
	for _, typ := range host.Types() {
		if types[typ] == 0 {
			t.Errorf("profile has no %s plugin", typ)
		}
	}
	if defaults != 1 {
		t.Errorf("%d operations plugins tagged default_keystore, want exactly 1", defaults)
	}
}

type cfgInfo struct{ c catalog.PluginConfig }

func (i cfgInfo) Name() string            { return i.c.Name }
func (i cfgInfo) Type() string            { return i.c.Type }
func (i cfgInfo) Tags() []string          { return i.c.Tags }
func (i cfgInfo) Build() string           { return "" }
func (i cfgInfo) Version() uint           { return 1 }
func info(c catalog.PluginConfig) cfgInfo { return cfgInfo{c} }

func TestProfileBuiltin(t *testing.T) {
	t.Setenv("APEIRO_LOCAL_KEYSTORE_DIR", t.TempDir())
	cfgs, err := host.LoadProfile("config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	builtins := builtin.All()
	var load []catalog.PluginConfig
	for _, c := range cfgs {
		found := slices.ContainsFunc(builtins, func(b catalog.BuiltInPlugin) bool { return b.Name() == c.Name && b.Type() == c.Type })
		if !found {
			if strict() {
				t.Errorf("no builtin %s/%s in pkg/plugins/builtin", c.Type, c.Name)
			} else {
				t.Logf("skipping %s/%s: not (yet) in pkg/plugins/builtin", c.Type, c.Name)
			}
			continue
		}
		load = append(load, c)
	}
	p, err := host.Load(context.Background(), host.Config{Plugins: load, BuiltIns: builtins, SupportedRegions: regions, Logger: plugintest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	callEvery(t, p, load)
}

func TestProfileExternal(t *testing.T) {
	t.Setenv("APEIRO_LOCAL_KEYSTORE_DIR", t.TempDir())
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := host.LoadProfile("config.external.yaml", host.WithBaseDir(root))
	if err != nil {
		t.Fatal(err)
	}
	var load []catalog.PluginConfig
	for _, c := range cfgs {
		bin := filepath.Base(c.Path)
		if _, err := os.Stat(filepath.Join(root, "cmd", "plugins", bin, "main.go")); err != nil {
			if strict() {
				t.Errorf("no cmd/plugins/%s for %s/%s", bin, c.Type, c.Name)
			} else {
				t.Logf("skipping %s/%s: cmd/plugins/%s does not exist (yet)", c.Type, c.Name, bin)
			}
			continue
		}
		if c.Path != filepath.Join(root, "bin", "plugins", bin) {
			t.Fatalf("relative path not resolved against the base dir: %q", c.Path)
		}
		// Build instead of relying on a previous `make plugins`.
		c.Path = plugintest.BuildPlugin(t, module+"/cmd/plugins/"+bin)
		load = append(load, c)
	}
	p, err := host.Load(context.Background(), host.Config{Plugins: load, SupportedRegions: regions, Logger: plugintest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	callEvery(t, p, load)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.CheckAllHealth(ctx); err != nil {
		t.Fatalf("health of the plugin processes: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// callEvery makes one meaningful call per loaded plugin type.
func callEvery(t *testing.T, p *host.Plugins, loaded []catalog.PluginConfig) {
	t.Helper()
	if len(p.Info()) != len(loaded) {
		t.Fatalf("loaded %d plugins, want %d", len(p.Info()), len(loaded))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	has := func(typ string) bool {
		return slices.ContainsFunc(loaded, func(c catalog.PluginConfig) bool { return c.Type == typ })
	}

	if has(host.TypeKeyOperations) {
		t.Run("keystore", func(t *testing.T) {
			name, ops, err := p.DefaultKeystore()
			if err != nil || name != builtin.NameLocalKeystore {
				t.Fatalf("DefaultKeystore = %q, %v", name, err)
			}
			mgmt, err := p.KeystoreManagement(name)
			if err != nil {
				t.Fatal(err)
			}
			ks, err := mgmt.CreateKeystore(ctx, &managementv1.CreateKeystoreRequest{Values: &structpb.Struct{}})
			if err != nil {
				t.Fatal(err)
			}
			if got := ks.GetSupportedRegions(); len(got) != 1 || got[0].GetTechnicalName() != "eu-central-1" {
				t.Fatalf("injected supportedregions not used: %v", got)
			}
			cfg := &commonv1.KeystoreInstanceConfig{Values: ks.GetKeyManagementConfig().GetAccessData().GetValues()}
			k, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: cfg, Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256,
				KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED, Region: "eu-central-1"})
			if err != nil {
				t.Fatalf("CreateKey with the access data of CreateKeystore: %v", err)
			}
			if _, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: &operationsv1.RequestParameters{Config: cfg, KeyId: k.GetKeyId()}}); err != nil {
				t.Fatal(err)
			}
		})
	}
	if has(host.TypeIdentity) {
		t.Run("identity", func(t *testing.T) {
			id, err := p.Identity()
			if err != nil {
				t.Fatal(err)
			}
			_, err = id.GetUser(ctx, &identity_managementv1.GetUserRequest{UserId: "no-such-user-in-the-profile"})
			if status.Code(err) != codes.NotFound {
				t.Fatalf("GetUser(missing) = %v, want NotFound", err)
			}
			if _, err := id.GetAllGroups(ctx, &identity_managementv1.GetAllGroupsRequest{}); err != nil {
				t.Fatalf("GetAllGroups: %v", err)
			}
		})
	}
	if has(host.TypeCertificateIssuer) {
		t.Run("certificate-issuer", func(t *testing.T) {
			ci, err := p.CertificateIssuer()
			if err != nil {
				t.Fatal(err)
			}
			profiletest.IssueCertificate(ctx, t, ci, "cmk-tenant-1", "eu-central-1")
		})
	}
	if has(host.TypeSystemInformation) {
		t.Run("system-information", func(t *testing.T) {
			sis, err := p.SystemInformation()
			if err != nil {
				t.Fatal(err)
			}
			_, err = sis.Get(ctx, &systeminformationv1.GetRequest{Id: "no-such-system", Type: "system"})
			if c := status.Code(err); c == codes.Unimplemented || c == codes.Unavailable {
				t.Fatalf("Get: %v", err)
			}
			_, err = sis.Get(ctx, &systeminformationv1.GetRequest{Id: "x", Type: "system"})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Get with a 1-character id: %v, want InvalidArgument (protovalidate)", err)
			}
		})
	}
	if has(host.TypeNotification) {
		t.Run("notification", func(t *testing.T) {
			n, err := p.Notification()
			if err != nil {
				t.Fatal(err)
			}
			resp, err := n.SendNotification(ctx, &notificationv1.SendNotificationRequest{
				NotificationType: notificationv1.NotificationType_NOTIFICATION_TYPE_EMAIL,
				Recipients:       []string{"ops@example.org"}, Subject: "profile test", Body: "<p>hello</p>",
			})
			if err != nil {
				t.Fatalf("SendNotification: %v", err)
			}
			if !resp.GetSuccess() && resp.GetMessage() == "" {
				t.Fatalf("success=false needs a message")
			}
		})
	}
}

// cmkServices is what the CMK-compatibility suite expects of the profile's
// non-keystore plugins: the example systems of the resource graph.
var cmkServices = cmkcompat.Services{
	Locality: "eu-central-1",
	Systems: []cmkcompat.System{
		{Type: "region", ID: "eu-central"},
		{Type: "tenant", ID: "root:example"},
		{Type: "account", ID: "root:example/default/main"},
	},
}

// profileLikeCMK returns the profile's entries in the given form that exist
// in this tree (builtins or plugin binaries, built here), as CMK would load
// them.
func profileLikeCMK(t *testing.T, external bool) host.Config {
	t.Helper()
	t.Setenv("APEIRO_LOCAL_KEYSTORE_DIR", t.TempDir())
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	file := "config.yaml"
	if external {
		file = "config.external.yaml"
	}
	cfgs, err := host.LoadProfile(file, host.WithBaseDir(root))
	if err != nil {
		t.Fatal(err)
	}
	builtins := builtin.All()
	cfg := host.Config{SupportedRegions: regions, Logger: plugintest.Logger()}
	for _, c := range cfgs {
		if external {
			bin := filepath.Base(c.Path)
			if _, err := os.Stat(filepath.Join(root, "cmd", "plugins", bin, "main.go")); err != nil {
				if strict() {
					t.Errorf("no cmd/plugins/%s for %s/%s", bin, c.Type, c.Name)
				}
				continue
			}
			c.Path = plugintest.BuildPlugin(t, module+"/cmd/plugins/"+bin)
		} else if !slices.ContainsFunc(builtins, func(b catalog.BuiltInPlugin) bool { return b.Name() == c.Name && b.Type() == c.Type }) {
			if strict() {
				t.Errorf("no builtin %s/%s in pkg/plugins/builtin", c.Type, c.Name)
			}
			continue
		}
		cfg.Plugins = append(cfg.Plugins, c)
	}
	if !external {
		cfg.BuiltIns = builtins
	}
	return cfg
}

// TestProfileCMKCompat loads the profile as a stock CMK does (its
// supportedregions merge, one catalog) in both forms and drives every plugin
// with CMK's request shapes.
func TestProfileCMKCompat(t *testing.T) {
	for _, external := range []bool{false, true} {
		name := map[bool]string{false: "builtin", true: "external"}[external]
		t.Run(name, func(t *testing.T) {
			cfg := profileLikeCMK(t, external)
			p := cmkcompat.Load(t, cfg)
			var mgmtYAML string
			for _, c := range cfg.Plugins {
				if c.Type == host.TypeKeystoreManagement && c.Name == builtin.NameLocalKeystore {
					mgmtYAML = c.YamlConfiguration
				}
			}
			if mgmtYAML != "" {
				t.Run("keystore", func(t *testing.T) {
					cmkcompat.RunKeystoreOn(t, p, cmkcompat.Keystore{
						Name: builtin.NameLocalKeystore, Regions: regions,
						Management: plugintest.Spec{YAML: mgmtYAML},
					})
				})
			}
			cmkcompat.RunServices(t, p, cmkServices)
		})
	}
}

// TestProfileOneFailingPluginFailsTheLoad: CMK loads all plugins in one
// catalog; one plugin refusing its configuration leaves CMK with none.
func TestProfileOneFailingPluginFailsTheLoad(t *testing.T) {
	cmkcompat.CheckOneFailureFailsLoad(t, profileLikeCMK(t, false))
	// In external form, the plugin whose YAML CMK rewrites.
	cfg := profileLikeCMK(t, true)
	var only []catalog.PluginConfig
	for _, c := range cfg.Plugins {
		if c.Type == host.TypeKeystoreManagement {
			only = append(only, c)
		}
	}
	cfg.Plugins = only
	cmkcompat.CheckOneFailureFailsLoad(t, cfg)
}
