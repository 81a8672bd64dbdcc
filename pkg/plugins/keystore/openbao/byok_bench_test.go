package openbao_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/vault"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/openbao"
)

// BenchmarkBYOKImport: one BYOK key per op through the operations plugin, as CMK drives it: CreateKey(BYOK),
// GetImportParameters, the customer's CKM_RSA_AES_KEY_WRAP of 32 bytes (client side, included), ImportKeyMaterial
// (the server's RSA-4096 OAEP decrypt dominates). Recorded in docs/performance.md.
func BenchmarkBYOKImport(b *testing.B) {
	p := startPeerB(b)
	ctx := context.Background()
	w := openbao.NewWrapper(p.configB(b))
	ops := newOpsB(b, p.yaml)
	if _, err := w.EnsureMount(ctx, "acme"); err != nil {
		b.Fatal(err)
	}
	acme := &commonv1.KeystoreInstanceConfig{Values: tenantCfg("acme")}
	op := func() error {
		k, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: acme, Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_BYOK})
		if err != nil {
			return err
		}
		ip, err := ops.GetImportParameters(ctx, &operationsv1.GetImportParametersRequest{Parameters: params("acme", k.GetKeyId())})
		if err != nil {
			return err
		}
		wrapped, err := wrapForImport(ip.GetImportParameters(), operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256)
		if err != nil {
			return err
		}
		sent, _ := structpb.NewStruct(map[string]any{openbao.ImportProviderParams: ip.GetImportParameters().GetFields()[openbao.ImportProviderParams].GetStringValue()})
		_, err = ops.ImportKeyMaterial(ctx, &operationsv1.ImportKeyMaterialRequest{Parameters: params("acme", k.GetKeyId()), ImportParameters: sent, EncryptedKeyMaterial: wrapped})
		return err
	}
	// The first GetImportParameters of a mount makes the server generate its RSA-4096 wrapping key (seconds): a
	// one-time cost per tenant mount, kept out of the measurement.
	if err := op(); err != nil {
		b.Fatal(err)
	}
	measure(b, false, op)
}

// BenchmarkStandbyFollowed: Wrap/Unwrap through the Wrapper pointed at the active node and at a standby of a 3-node
// raft HA cluster (the standby forwards each request to the active node over the cluster port).
func BenchmarkStandbyFollowed(b *testing.B) {
	c := vault.StartCluster(b, 3)
	ctx := context.Background()
	active, err := c.WaitActive(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	standby, err := c.Standby(ctx)
	if err != nil {
		b.Fatal(err)
	}
	roleID, sidFile := c.Server(active).AppRole(b, "apeiro-cmk", vault.PluginPolicy, "1h")
	sid, _ := os.ReadFile(sidFile)
	sidCopy := filepath.Join(b.TempDir(), "sid")
	_ = os.WriteFile(sidCopy, sid, 0o600)
	acme := tenantCfg("acme")
	dk := make([]byte, 32)
	aad := map[string]string{"tenant": "acme", "namespace": "bench", "name": "key"}
	var key string
	for _, nd := range []*vault.Node{active, standby} {
		role := "active"
		if nd == standby {
			role = "standby"
		}
		yaml := fmt.Sprintf("address: %s\nregion: %s\nauth: {method: approle, roleId: %q, secretIdFile: %q}\n", nd.Addr, region, roleID, sidCopy)
		cfg, err := openbao.ParseConfig(yaml)
		if err != nil {
			b.Fatal(err)
		}
		w := openbao.NewWrapper(cfg)
		if key == "" {
			key = setupTenantKeyB(b, ctx, w, newOpsB(b, yaml), "acme")
		}
		wrapped, err := w.Wrap(ctx, acme, key, dk, aad)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(role+"/wrap", func(b *testing.B) {
			measure(b, false, func() error { _, err := w.Wrap(ctx, acme, key, dk, aad); return err })
		})
		b.Run(role+"/unwrap", func(b *testing.B) {
			measure(b, false, func() error { _, err := w.Unwrap(ctx, acme, key, wrapped, aad); return err })
		})
		b.Run(role+"/unwrap-parallel", func(b *testing.B) {
			measure(b, true, func() error { _, err := w.Unwrap(ctx, acme, key, wrapped, aad); return err })
		})
	}
}
