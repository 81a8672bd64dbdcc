package kcp_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/openkcm/plugin-sdk/pkg/catalog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/apeirora/apeiro-cmk/pkg/admission/pluginbacked"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpctrl"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpserver"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/keychain/backends"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/builtin"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/profiles"
)

var secretsGVR = corev1.SchemeGroupVersion.WithResource("secrets")

// keyChain assembles what the webhook assembles in kcp mode for the embedded local keystore: the LOCAL plugins of
// the Apeiro profile (probes), the key chain with the local wrapper (provisioning and wrapping), and the kcp
// controllers, to be fed by a watcher's OnAccount / OnKey.
func keyChain(t *testing.T, s *kcpserver.Server, graph *kcp.Graph, model *hierarchy.Model) (*kcpctrl.Controllers, *keychain.Chain) {
	t.Helper()
	ctrllog.SetLogger(testr.New(t)) // the controllers' clients log through controller-runtime
	t.Setenv("APEIRO_LOCAL_KEYSTORE_DIR", t.TempDir())
	all, err := host.ParseProfile(profiles.ApeiroBuiltin)
	if err != nil {
		t.Fatal(err)
	}
	var entries []catalog.PluginConfig
	for _, e := range all {
		if e.Name == "LOCAL" {
			entries = append(entries, e)
		}
	}
	ctx := context.Background()
	p, err := host.Load(ctx, host.Config{Plugins: entries, BuiltIns: builtin.All(), Logger: slog.New(logr.ToSlogHandler(testr.New(t)))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	mapping := map[string]string{string(cmkv1.KeystoreLocal): "LOCAL"}
	chain := keychain.NewChain(kcp.NoClusterReader{})
	if failed, err := backends.Register(ctx, chain, entries, mapping); err != nil || len(failed) > 0 {
		t.Fatalf("local wrapper: %v %v", err, failed)
	}
	chain.SetProvisioning(cmkv1.KeystoreLocal, true)
	prober := &pluginbacked.KeyProber{
		Client: func(ks cmkv1.KeystoreType) (pluginbacked.KeyOpsClient, error) {
			if ks != cmkv1.KeystoreLocal {
				return nil, fmt.Errorf("no plugin for keystore %q", ks)
			}
			return p.KeyOperations("LOCAL")
		},
		InstanceConfig: chain.InstanceConfig,
		// Short positive-answer cache and re-probe period (the webhook's --key-probe-cache-ttl and
		// --account-probe-interval): the alerts subtest sees a deleted L1 key at the next probe, seconds later.
		TTL: time.Second,
	}
	c, err := kcpctrl.New(kcpctrl.Options{Config: s.Shard, Graph: graph, Model: model, Chain: chain, Prober: prober,
		AccountInterval: 2 * time.Second, RetryInterval: 2 * time.Second, Log: testr.NewWithOptions(t, testr.Options{Verbosity: 1})})
	if err != nil {
		t.Fatal(err)
	}
	return c, chain
}

// checkKeyChain proves, on kcp, that an Account in a tenant workspace becomes Ready through its keystore probe and
// that a key using it (in the same workspace, and in a child workspace through the account-workspace annotation)
// gets wrapped material that unwraps under the Account's L1 key.
func checkKeyChain(t *testing.T, ctx context.Context, s *kcpserver.Server, w *kcpserver.World, chain *keychain.Chain) {
	for _, ws := range []string{w.Acme, w.Globex} {
		eventually(t, "the Account in "+ws+" Ready through its probe", func() error {
			a, err := getAccount(ctx, s, ws, "keys", "main")
			if err != nil {
				return err
			}
			c := meta.FindStatusCondition(a.Status.Conditions, cmkv1.ConditionReady)
			if c == nil || c.Status != metav1.ConditionTrue || c.Reason != "KeyAnswered" {
				return fmt.Errorf("Ready condition %+v", c)
			}
			return nil
		})
	}
	for _, k := range []struct{ ws, name, accountWS string }{
		{w.Globex, "k-own-workspace", w.Globex},
		{w.AcmeEU, "k-own-tree-ancestor", w.Acme}, // the Account lives in the parent workspace
	} {
		eventually(t, "key "+k.ws+"/"+k.name+" wrapped and Ready", func() error {
			key, err := getKey(ctx, s, k.ws, "keys", k.name)
			if err != nil {
				return err
			}
			if !meta.IsStatusConditionTrue(key.Status.Conditions, cmkv1.ConditionReady) || key.Status.KeyID == "" {
				return fmt.Errorf("status %+v", key.Status)
			}
			dc, err := kcpserver.Client(s.Base, k.ws)
			if err != nil {
				return err
			}
			u, err := dc.Resource(secretsGVR).Namespace("keys").Get(ctx, keychain.SecretName(k.name), metav1.GetOptions{})
			if err != nil {
				return err
			}
			var sec corev1.Secret
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &sec); err != nil {
				return err
			}
			wrapped, err := keychain.WrappedFromSecret(&sec, key)
			if err != nil {
				return err
			}
			acct, err := getAccount(ctx, s, k.accountWS, "keys", "main")
			if err != nil {
				return err
			}
			material, err := chain.UnwrapWithAccount(ctx, acct, wrapped, keychain.ServiceKeyAAD(key))
			if err != nil {
				return fmt.Errorf("unwrapping under the Account's L1 key: %w", err)
			}
			if len(material) != 32 {
				return fmt.Errorf("unwrapped %d bytes, want an AES-256 key", len(material))
			}
			return nil
		})
	}
}

func getAccount(ctx context.Context, s *kcpserver.Server, ws, ns, name string) (*cmkv1.Account, error) {
	var a cmkv1.Account
	return &a, getTyped(ctx, s, ws, kcp.AccountsGVR.Resource, ns, name, &a)
}

func getKey(ctx context.Context, s *kcpserver.Server, ws, ns, name string) (*cmkv1.ServiceEncryptionKey, error) {
	var k cmkv1.ServiceEncryptionKey
	return &k, getTyped(ctx, s, ws, kcp.KeysGVR.Resource, ns, name, &k)
}

func getTyped(ctx context.Context, s *kcpserver.Server, ws, resource, ns, name string, into any) error {
	dc, err := kcpserver.Client(s.Base, ws)
	if err != nil {
		return err
	}
	u, err := dc.Resource(cmkv1.GroupVersion.WithResource(resource)).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into)
}
