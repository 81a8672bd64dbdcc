package keychain_test

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// echoWrapper "wraps" by copying, and records the configuration it was given.
type echoWrapper struct{ lastConfig *structpb.Struct }

func (e *echoWrapper) Wrap(_ context.Context, cfg *structpb.Struct, _ string, pt []byte, _ map[string]string) (*keychain.Wrapped, error) {
	e.lastConfig = cfg
	return &keychain.Wrapped{Ciphertext: append([]byte(nil), pt...)}, nil
}

func (e *echoWrapper) Unwrap(_ context.Context, cfg *structpb.Struct, _ string, w *keychain.Wrapped, _ map[string]string) ([]byte, error) {
	e.lastConfig = cfg
	return w.Ciphertext, nil
}

type accessWrapper struct{ echoWrapper }

func (accessWrapper) AccessData(a *cmkv1.Account) (map[string]any, error) {
	return map[string]any{"instanceId": "tenant-" + a.Labels[cmkv1.TenantLabel]}, nil
}

func acct(ks cmkv1.KeystoreType) *cmkv1.Account {
	return &cmkv1.Account{
		ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "main", Labels: map[string]string{cmkv1.TenantLabel: "acme"}},
		Spec: cmkv1.AccountSpec{Keystore: ks, KeyRef: "arn:aws:kms:eu-central-1:111122223333:key/k", Region: "eu-central-1",
			Auth: &cmkv1.AccountAuth{IRSARoleARN: "arn:aws:iam::111122223333:role/apeiro-cmk-tenant-acme"}},
	}
}

func TestChainRegistry(t *testing.T) {
	ctx := context.Background()
	c := keychain.NewChain(nil)
	if _, err := c.WrapWithAccount(ctx, acct(cmkv1.KeystoreAWS), []byte("x"), nil); !errors.Is(err, keychain.ErrNoWrapper) {
		t.Fatalf("unmapped keystore: %v, want ErrNoWrapper", err)
	}
	e := &echoWrapper{}
	c.Register(cmkv1.KeystoreAWS, e)
	c.SetProvisioning(cmkv1.KeystoreAWS, true) // not a Provisioner: has no effect
	if c.Provisions(cmkv1.KeystoreAWS) {
		t.Fatal("a Wrapper that cannot create keys is reported as provisioning")
	}
	if created, err := c.EnsureL1Key(ctx, acct(cmkv1.KeystoreAWS)); created || err != nil {
		t.Fatalf("EnsureL1Key on aws = %v, %v; must do nothing", created, err)
	}
	ct, err := c.EncryptForAccount(ctx, acct(cmkv1.KeystoreAWS), []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	v := e.lastConfig.AsMap()
	if v["tenant"] != "acme" || v["roleArn"] != "arn:aws:iam::111122223333:role/apeiro-cmk-tenant-acme" || v["region"] != "eu-central-1" || v["namespace"] != "acme" {
		t.Fatalf("instance configuration %v lacks the Account's binding", v)
	}
	if pt, err := c.DecryptForAccount(ctx, acct(cmkv1.KeystoreAWS), ct); err != nil || string(pt) != "payload" {
		t.Fatalf("DecryptForAccount = %q, %v", pt, err)
	}
	if v, _ := c.L1KeyVersion(ctx, acct(cmkv1.KeystoreAWS)); v != "" {
		t.Fatalf("L1KeyVersion of a backend without versions = %q", v)
	}

	c.Register(cmkv1.KeystoreLocal, &accessWrapper{})
	cfg, err := c.InstanceConfig(acct(cmkv1.KeystoreLocal))
	if err != nil || cfg.AsMap()["instanceId"] != "tenant-acme" {
		t.Fatalf("access data not added: %v, %v", cfg, err)
	}
	if got := c.Keystores(); len(got) != 2 || got[0] != cmkv1.KeystoreAWS {
		t.Fatalf("Keystores = %v", got)
	}
}

func TestWorkloadAllowed(t *testing.T) {
	k := &cmkv1.ServiceEncryptionKey{Spec: cmkv1.ServiceEncryptionKeySpec{WorkloadIdentities: []string{"spiffe://mesh.example/ns/acme/sa/orders"}}}
	if !keychain.WorkloadAllowed(k, "spiffe://mesh.example/ns/acme/sa/orders") {
		t.Fatal("listed workload refused")
	}
	for _, id := range []string{"", "spiffe://mesh.example/ns/acme/sa/other", "spiffe://mesh.example/ns/acme/sa/orders/"} {
		if keychain.WorkloadAllowed(k, id) {
			t.Fatalf("%q allowed", id)
		}
	}
}
