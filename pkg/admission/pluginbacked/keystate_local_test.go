package pluginbacked_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/admissiontest"
	"github.com/apeirora/apeiro-cmk/pkg/admission/pluginbacked"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// TestAdmissionDeniesKeyNotEnabled: an Account create naming a key of the real local keystore plugin that exists but
// is disabled, or scheduled for deletion, is denied (A-KEY-NOT-ENABLED on spec.keyRef, naming the state and nothing
// else of the keystore's answer); the same key enabled is admitted.
func TestAdmissionDeniesKeyNotEnabled(t *testing.T) {
	mgmt, ops := loadLocalKeystore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ks, err := mgmt.CreateKeystore(ctx, &managementv1.CreateKeystoreRequest{Values: &structpb.Struct{}})
	if err != nil {
		t.Fatal(err)
	}
	access := ks.GetKeyManagementConfig().GetAccessData()
	newKey := func() string {
		k, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: access,
			Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED})
		if err != nil {
			t.Fatal(err)
		}
		return k.GetKeyId()
	}
	params := func(id string) *operationsv1.RequestParameters {
		return &operationsv1.RequestParameters{Config: access, KeyId: id}
	}
	enabled, disabled, pending := newKey(), newKey(), newKey()
	if _, err := ops.DisableKey(ctx, &operationsv1.DisableKeyRequest{Parameters: params(disabled)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.DeleteKey(ctx, &operationsv1.DeleteKeyRequest{Parameters: params(pending)}); err != nil {
		t.Fatal(err)
	}

	prober := &pluginbacked.KeyProber{
		Client:         func(cmkv1.KeystoreType) (pluginbacked.KeyOpsClient, error) { return ops, nil },
		InstanceConfig: func(*cmkv1.Account) (*structpb.Struct, error) { return access.GetValues(), nil },
	}
	w := admissiontest.NewWorld()
	mux := admissiontest.Mux(w.Handlers(admission.Handlers{Keys: prober}), admission.Limits{})
	for _, tc := range []struct {
		key, state string // state "" = admitted
	}{{enabled, ""}, {disabled, "DISABLED"}, {pending, "PENDING_DELETION"}} {
		a := admissiontest.AccountObject(admissiontest.AcmeEU, "second", admissiontest.AcmeEU)
		a.Spec.KeyRef = tc.key
		rec := admissiontest.Post(mux, admission.PathValidateAccount,
			admissiontest.Req{Kind: "Account", Namespace: a.Namespace, Name: a.Name, Object: a}.Body())
		ar, err := admissiontest.Decode(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		r := ar.Response
		if tc.state == "" {
			if !r.Allowed || len(r.Warnings) > 0 {
				t.Fatalf("enabled key: allowed=%v warnings=%q result=%+v", r.Allowed, r.Warnings, r.Result)
			}
			continue
		}
		if r.Allowed || r.Result.Details == nil || len(r.Result.Details.Causes) != 1 {
			t.Fatalf("%s key: allowed=%v result=%+v, want one denial cause", tc.state, r.Allowed, r.Result)
		}
		cause := r.Result.Details.Causes[0]
		if cause.Field != "spec.keyRef" || !strings.HasSuffix(string(cause.Type), admission.RuleKeyNotEnabled) ||
			!strings.Contains(cause.Message, "state "+tc.state) {
			t.Fatalf("%s key: cause %+v, want %s on spec.keyRef naming the state", tc.state, cause, admission.RuleKeyNotEnabled)
		}
	}
}
