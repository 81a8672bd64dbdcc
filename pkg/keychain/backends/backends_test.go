package backends_test

import (
	"context"
	"testing"

	"github.com/openkcm/plugin-sdk/pkg/catalog"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/keychain/backends"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
)

func TestMappingAndRegister(t *testing.T) {
	entries := []catalog.PluginConfig{
		{Name: "LOCAL", Type: host.TypeKeyOperations, YamlConfiguration: "dir: " + t.TempDir() + "\n"},
		{Name: "LOCAL", Type: host.TypeKeystoreManagement},
		{Name: "AWS", Type: host.TypeKeyOperations, YamlConfiguration: "rolePattern: \"apeiro-cmk-tenant-{tenant}\"\n"},
		{Name: "THALES", Type: host.TypeKeyOperations, Disabled: true},
		{Name: "CUSTOM", Type: host.TypeKeyOperations},
	}
	m := backends.Mapping(entries)
	if len(m) != 2 || m["local"] != "LOCAL" || m["aws"] != "AWS" {
		t.Fatalf("Mapping = %v", m)
	}
	c := keychain.NewChain(nil)
	failed, err := backends.Register(context.Background(), c, entries, m)
	if err != nil || len(failed) != 0 {
		t.Fatalf("Register = %v, %v", failed, err)
	}
	if ks := c.Keystores(); len(ks) != 2 || ks[0] != cmkv1.KeystoreAWS || ks[1] != cmkv1.KeystoreLocal {
		t.Fatalf("Keystores = %v", ks)
	}
	// A mapping naming a plugin that does not exist is an error; a backend without a Wrapper is reported.
	if _, err := backends.Register(context.Background(), c, entries, map[string]string{"local": "NOPE"}); err == nil {
		t.Fatal("mapping to a missing plugin accepted")
	}
	failed, err = backends.Register(context.Background(), keychain.NewChain(nil), []catalog.PluginConfig{{Name: "LOCAL", Type: host.TypeKeyOperations}}, map[string]string{"local": "LOCAL", "thales": "LOCAL"})
	if err != nil || failed["local"] == nil || failed["thales"] == nil {
		t.Fatalf("in-memory local and thales must be reported without a wrapper: %v, %v", failed, err)
	}
}
