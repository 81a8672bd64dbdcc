package pluginbacked_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/admissiontest"
	"github.com/apeirora/apeiro-cmk/pkg/admission/pluginbacked"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/local"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

// The management and operations plugins each keep their own (memory) store; a shared secret makes the access data
// one mints valid for the other.
const localYAML = "secret: {source: embedded, value: admission-probe-test-secret-0123456789}\n"

// loadLocalKeystore loads the real local keystore plugin (management and operations, builtin mode) through the
// plugin-sdk catalog.
func loadLocalKeystore(t *testing.T) (managementv1.KeystoreProviderClient, operationsv1.KeystoreInstanceKeyOperationClient) {
	t.Helper()
	spec := func(typ string, b func(string) catalog.BuiltInPlugin) plugintest.Spec {
		return plugintest.Spec{Type: typ, Name: "LOCAL", YAML: localYAML, BuiltIn: func() catalog.BuiltInPlugin { return b("LOCAL") }}
	}
	plugins := plugintest.LoadSet(t, plugintest.ModeBuiltin,
		spec(host.TypeKeyOperations, local.NewOperationsBuiltIn),
		spec(host.TypeKeystoreManagement, local.NewManagementBuiltIn))[0].Plugins
	mgmt, err := plugins.KeystoreManagement("LOCAL")
	if err != nil {
		t.Fatal(err)
	}
	ops, err := plugins.KeyOperations("LOCAL")
	if err != nil {
		t.Fatal(err)
	}
	return mgmt, ops
}

// TestKeyProberLocalKeystore probes keys in the real local keystore plugin, loaded through the plugin-sdk catalog
// (builtin mode): each namespace has its own keystore instance, whose key-management access data the
// InstanceConfig func hands to the plugin, as CMK does for a tenant's keystore.
func TestKeyProberLocalKeystore(t *testing.T) {
	mgmt, ops := loadLocalKeystore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// One keystore instance per tenant namespace, one key in each.
	access := map[string]*structpb.Struct{}
	keys := map[string]string{}
	for _, ns := range []string{admissiontest.AcmeEU, admissiontest.Globex} {
		ks, err := mgmt.CreateKeystore(ctx, &managementv1.CreateKeystoreRequest{Values: &structpb.Struct{}})
		if err != nil {
			t.Fatalf("CreateKeystore: %v", err)
		}
		access[ns] = ks.GetKeyManagementConfig().GetAccessData().GetValues()
		k, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{
			Config:    ks.GetKeyManagementConfig().GetAccessData(),
			Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256,
			KeyType:   operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED,
		})
		if err != nil {
			t.Fatalf("CreateKey: %v", err)
		}
		keys[ns] = k.GetKeyId()
	}

	prober := &pluginbacked.KeyProber{
		Client: func(ks cmkv1.KeystoreType) (pluginbacked.KeyOpsClient, error) {
			if ks != cmkv1.KeystoreLocal {
				return nil, fmt.Errorf("no plugin for %q", ks)
			}
			return ops, nil
		},
		InstanceConfig: func(a *cmkv1.Account) (*structpb.Struct, error) {
			ad, ok := access[a.Namespace]
			if !ok {
				return nil, fmt.Errorf("namespace %q has no keystore instance", a.Namespace)
			}
			return ad, nil
		},
		TTL: time.Hour,
	}
	localAccount := func(ns, keyRef string) *cmkv1.Account {
		a := admissiontest.AccountObject(ns, "main", ns)
		a.Spec.KeyRef = keyRef
		return a
	}

	if err := prober.ProbeKey(ctx, localAccount(admissiontest.AcmeEU, keys[admissiontest.AcmeEU])); err != nil {
		t.Fatalf("existing key: ProbeKey = %v", err)
	}
	if err := prober.ProbeKey(ctx, localAccount(admissiontest.AcmeEU, "lk-local-does-not-exist")); !errors.Is(err, admission.ErrKeyNotFound) {
		t.Fatalf("missing key: ProbeKey = %v, want ErrKeyNotFound", err)
	}
	// globex's instance does not hold acme-eu's key, even right after acme-eu's probe succeeded.
	if err := prober.ProbeKey(ctx, localAccount(admissiontest.Globex, keys[admissiontest.AcmeEU])); !errors.Is(err, admission.ErrKeyNotFound) {
		t.Fatalf("acme-eu's key through globex's keystore: ProbeKey = %v, want ErrKeyNotFound", err)
	}
	if err := prober.ProbeKey(ctx, localAccount(admissiontest.Globex, keys[admissiontest.Globex])); err != nil {
		t.Fatalf("globex's key: ProbeKey = %v", err)
	}

	// The same plugin behind the Account admission handler.
	w := admissiontest.NewWorld()
	mux := admissiontest.Mux(w.Handlers(admission.Handlers{Keys: prober}), admission.Limits{})
	for _, tc := range []struct {
		keyRef  string
		allowed bool
	}{{keys[admissiontest.AcmeEU], true}, {"lk-local-missing", false}} {
		a := localAccount(admissiontest.AcmeEU, tc.keyRef)
		a.Name = "second"
		rec := admissiontest.Post(mux, admission.PathValidateAccount,
			admissiontest.Req{Kind: "Account", Namespace: a.Namespace, Name: a.Name, Object: a}.Body())
		ar, err := admissiontest.Decode(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		r := ar.Response
		if r.Allowed != tc.allowed || len(r.Warnings) > 0 {
			t.Fatalf("key %q: allowed=%v warnings=%q status=%+v, want allowed=%v without warnings", tc.keyRef, r.Allowed, r.Warnings, r.Result, tc.allowed)
		}
		if !tc.allowed && (r.Result.Details == nil || len(r.Result.Details.Causes) != 1 || r.Result.Details.Causes[0].Field != "spec.keyRef") {
			t.Fatalf("denial does not name spec.keyRef: %+v", r.Result)
		}
	}
}
