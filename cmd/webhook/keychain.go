package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/pluginbacked"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/controllers/account"
	"github.com/apeirora/apeiro-cmk/pkg/controllers/serviceencryptionkey"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/keychain/backends"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/profiles"
)

// keychainOptions are the flags of the key chain (Account probes, ServiceEncryptionKey material).
type keychainOptions struct {
	provisionLocal bool
	probeInterval  time.Duration
	probeCacheTTL  time.Duration
}

func (k *keychainOptions) bind(fs *flag.FlagSet) {
	fs.BoolVar(&k.provisionLocal, "provision-local-keys", true, "Create a missing L1 key of an Account on the embedded local keystore (the platform is that keystore's custodian). Keys in customer keystores are never created.")
	fs.DurationVar(&k.probeInterval, "account-probe-interval", 5*time.Minute, "How often a Ready Account's L1 key is probed again.")
	fs.DurationVar(&k.probeCacheTTL, "key-probe-cache-ttl", 30*time.Second, "How long a positive L1 key probe answer is reused (admission and reconciler share it).")
}

// keychainSetup is what the key chain hands to the rest of the server.
type keychainSetup struct {
	Chain *keychain.Chain
	// Prober probes L1 keys through the keystore plugins (deduplicated, cached); nil when no keystore is mapped.
	Prober *pluginbacked.KeyProber
	// Admission is the prober of the admission webhook: keystores the platform provisions are not probed there
	// (their key is created after admission).
	Admission admission.KeyProber
	Mapping   map[string]string
}

// keystoreMapping resolves --keystore-plugins: explicit "local=LOCAL,aws=AWS", "none", or empty = every keystore
// operations plugin of the profile whose lower-cased name is a keystore type (LOCAL → local, AWS → aws).
func keystoreMapping(flagValue string, entries []catalog.PluginConfig) map[string]string {
	switch strings.TrimSpace(flagValue) {
	case "none":
		return map[string]string{}
	case "":
		return backends.Mapping(entries)
	default:
		return parseMap(flagValue)
	}
}

// profileEntries re-reads the profile the plugins were loaded from, for the yamlConfiguration of each keystore.
func profileEntries(o options) ([]catalog.PluginConfig, error) {
	if o.profile == "" {
		return host.ParseProfile(profiles.ApeiroBuiltin)
	}
	return host.LoadProfile(o.profile)
}

// setupKeychain builds the chain from the profile's keystore plugins and the prober shared by admission and the
// Account reconciler.
func setupKeychain(ctx context.Context, mgr ctrl.Manager, o options, p *plugins) (*keychainSetup, error) {
	log := ctrl.Log.WithName("keychain")
	entries, err := profileEntries(o)
	if err != nil {
		return nil, fmt.Errorf("reading plugin profile: %w", err)
	}
	mapping := keystoreMapping(o.keystorePlugins, entries)
	chain := keychain.NewChain(mgr.GetAPIReader())
	failed, err := backends.Register(ctx, chain, entries, mapping)
	if err != nil {
		return nil, fmt.Errorf("--keystore-plugins: %w", err)
	}
	for ks, err := range failed {
		// Probes still work through the plugin; keys on this keystore just cannot get material.
		log.Error(err, "keystore has no wrapper: its ServiceEncryptionKeys stay not Ready", "keystore", ks, "plugin", mapping[ks])
	}
	chain.SetProvisioning(cmkv1.KeystoreLocal, o.kc.provisionLocal)
	s := &keychainSetup{Chain: chain, Mapping: mapping}
	if len(mapping) == 0 {
		return s, nil
	}
	s.Prober = &pluginbacked.KeyProber{
		Client: func(ks cmkv1.KeystoreType) (pluginbacked.KeyOpsClient, error) {
			name, ok := mapping[string(ks)]
			if !ok {
				return nil, fmt.Errorf("no plugin is mapped to keystore %q (--keystore-plugins)", ks)
			}
			return p.KeyOperations(name)
		},
		InstanceConfig: chain.InstanceConfig,
		TTL:            o.kc.probeCacheTTL,
	}
	s.Admission = keychain.ProberFunc(func(ctx context.Context, a *cmkv1.Account) error {
		if chain.Provisions(a.Spec.Keystore) {
			return nil // the Account reconciler creates the key; nothing to prove before that
		}
		return s.Prober.ProbeKey(ctx, a)
	})
	return s, nil
}

// describe lists the mapping for the start-up log.
func (s *keychainSetup) describe() string {
	var out []string
	for ks, name := range s.Mapping {
		w := "probe only"
		if _, err := s.Chain.Wrapper(cmkv1.KeystoreType(ks)); err == nil {
			w = "probe+wrap"
		}
		if s.Chain.Provisions(cmkv1.KeystoreType(ks)) {
			w += "+provision"
		}
		out = append(out, ks+"="+name+"("+w+")")
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// setupKeyControllers registers the Account status reconciler and the ServiceEncryptionKey controller.
func setupKeyControllers(mgr ctrl.Manager, o options, s *keychainSetup) error {
	rec := mgr.GetEventRecorder("apeiro-cmk")
	ar := &account.Reconciler{Client: mgr.GetClient(), Chain: s.Chain, Recorder: rec, Interval: o.kc.probeInterval}
	if s.Prober != nil {
		ar.Prober = s.Prober
	}
	if err := ar.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the account status reconciler: %w", err)
	}
	sr := &serviceencryptionkey.Reconciler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Chain: s.Chain, Recorder: rec}
	if err := sr.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the service encryption key controller: %w", err)
	}
	return nil
}
