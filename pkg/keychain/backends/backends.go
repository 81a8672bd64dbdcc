// Package backends builds the in-process keychain.Wrapper of each keystore type from the configuration of its
// operations plugin in a plugins profile, so the webhook server and cmkctl assemble the same key chain.
package backends

import (
	"context"
	"fmt"
	"strings"

	"github.com/openkcm/plugin-sdk/pkg/catalog"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/keychain/localwrap"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	awskeystore "github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/aws"
	openbaokeystore "github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/openbao"
	thaleskeystore "github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/thales"
)

// New builds the Wrapper of keystore type ks from yamlConfiguration (its operations plugin's configuration).
func New(ctx context.Context, ks cmkv1.KeystoreType, yamlConfiguration string) (keychain.Wrapper, error) {
	switch ks {
	case cmkv1.KeystoreLocal:
		return localwrap.New(ctx, yamlConfiguration)
	case cmkv1.KeystoreAWS:
		cfg, err := awskeystore.ParseConfig(yamlConfiguration)
		if err != nil {
			return nil, err
		}
		return awskeystore.NewWrapper(cfg), nil
	case cmkv1.KeystoreThales:
		cfg, err := thaleskeystore.ParseConfig(yamlConfiguration)
		if err != nil {
			return nil, err
		}
		if len(cfg.Tokens) == 0 {
			return nil, fmt.Errorf("thales keystore: no PKCS#11 token is configured (tokens: [{label, pin}])")
		}
		return thaleskeystore.NewWrapper(cfg), nil
	case cmkv1.KeystoreOpenBao:
		cfg, err := openbaokeystore.ParseConfig(yamlConfiguration)
		if err != nil {
			return nil, err
		}
		return openbaokeystore.NewWrapper(cfg), nil
	default:
		return nil, fmt.Errorf("no in-process wrapper for keystore %q yet", ks)
	}
}

// Mapping maps keystore types to the profile's enabled operations plugins whose lower-cased name is a keystore type
// (LOCAL → local, AWS → aws).
func Mapping(entries []catalog.PluginConfig) map[string]string {
	m := map[string]string{}
	for _, e := range entries {
		if e.Type != host.TypeKeyOperations || e.Disabled {
			continue
		}
		switch ks := cmkv1.KeystoreType(strings.ToLower(e.Name)); ks {
		case cmkv1.KeystoreAWS, cmkv1.KeystoreLocal, cmkv1.KeystoreOpenBao, cmkv1.KeystoreThales:
			m[string(ks)] = e.Name
		}
	}
	return m
}

// Register adds to chain the Wrapper of every keystore type in mapping (type → operations plugin name), configured
// from the plugin's entry in entries. A keystore whose Wrapper cannot be built is reported in the returned map and
// left out (probes still work through its plugin); a mapping naming no enabled plugin is an error.
func Register(ctx context.Context, chain *keychain.Chain, entries []catalog.PluginConfig, mapping map[string]string) (map[string]error, error) {
	failed := map[string]error{}
	for ks, name := range mapping {
		yamlCfg, found := "", false
		for _, e := range entries {
			if e.Name == name && e.Type == host.TypeKeyOperations && !e.Disabled {
				yamlCfg, found = e.YamlConfiguration, true
			}
		}
		if !found {
			return nil, fmt.Errorf("keystore %q maps to %q, which is no enabled KeystoreInstanceKeyOperation plugin of the profile", ks, name)
		}
		w, err := New(ctx, cmkv1.KeystoreType(ks), yamlCfg)
		if err != nil {
			failed[ks] = err
			continue
		}
		chain.Register(cmkv1.KeystoreType(ks), w)
	}
	return failed, nil
}
