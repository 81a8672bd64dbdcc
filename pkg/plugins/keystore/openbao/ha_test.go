package openbao_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/vault"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/openbao"
)

// TestStandbyFollowing points the plugin at a STANDBY of a real 3-node raft HA cluster: login, mount, create,
// wrap and unwrap are followed to the active node, and the health mapping reports "standby". Then the active node is
// killed: while the survivors elect a new leader every call fails fast with a precise Unavailable error (never past
// its deadline), and the same plugin recovers by itself once a leader exists; ciphertexts from before still unwrap.
func TestStandbyFollowing(t *testing.T) {
	c := vault.StartCluster(t, 3)
	ctx := ctxT(t, 90*time.Second)
	active, err := c.WaitActive(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	standby, err := c.Standby(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roleID, sidFile := c.Server(active).AppRole(t, "apeiro-cmk", vault.PluginPolicy, "1h")
	sid, _ := os.ReadFile(sidFile)
	sidCopy := filepath.Join(t.TempDir(), "sid")
	_ = os.WriteFile(sidCopy, sid, 0o600)
	yaml := fmt.Sprintf("address: %s\nregion: %s\ncallTimeout: 3s\nauth: {method: approle, roleId: %q, secretIdFile: %q}\n", standby.Addr, region, roleID, sidCopy)
	cfg, err := openbao.ParseConfig(yaml)
	if err != nil {
		t.Fatal(err)
	}
	w := openbao.NewWrapper(cfg)
	ops := newOps(t, yaml)

	if st, err := w.ServerState(ctx); err != nil || st != openbao.StateStandby {
		t.Fatalf("ServerState(standby node) = %q, %v; want %q", st, err, openbao.StateStandby)
	}
	if err := w.Health(ctx); err != nil {
		t.Fatalf("Health of a standby with an active node: %v, want nil (it forwards)", err)
	}
	key := setupTenantKey(t, ctx, w, ops, "acme")
	acme := tenantCfg("acme")
	dk := []byte("0123456789abcdef0123456789abcdef")
	aad := map[string]string{"tenant": "acme", "name": "db"}
	wr, err := w.Wrap(ctx, acme, key, dk, aad)
	if err != nil {
		t.Fatalf("Wrap through the standby: %v", err)
	}
	if got, err := w.Unwrap(ctx, acme, key, wr, aad); err != nil || string(got) != string(dk) {
		t.Fatalf("Unwrap through the standby: %v", err)
	}
	if g, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params("acme", key)}); err != nil || g.GetStatus() != openbao.StateEnabled {
		t.Fatalf("GetKey through the standby = %v, %v", g, err)
	}

	// Kill the active node. Calls through the standby fail precisely until a new leader exists, then succeed.
	killed := time.Now()
	active.Kill()
	var failures []error
	recovered := time.Duration(0)
	for time.Since(killed) < 45*time.Second {
		cctx, cancel := context.WithTimeout(ctx, 4*time.Second)
		t0 := time.Now()
		got, err := w.Unwrap(cctx, acme, key, wr, aad)
		took := time.Since(t0)
		cancel()
		if took > 5*time.Second {
			t.Fatalf("Unwrap held the caller %v past its 4 s deadline", took)
		}
		if err == nil {
			if string(got) != string(dk) {
				t.Fatal("Unwrap after failover returned other bytes")
			}
			recovered = time.Since(killed)
			break
		}
		code := status.Code(err)
		if !errors.Is(err, keychain.ErrUnavailable) || !(code == codes.Unavailable && errors.Is(err, openbao.ErrStandby) || code == codes.DeadlineExceeded) {
			t.Fatalf("during the election: %v (code %s); want Unavailable naming the lost active node (ErrStandby), or DeadlineExceeded", err, code)
		}
		failures = append(failures, err)
		time.Sleep(200 * time.Millisecond)
	}
	if recovered == 0 {
		t.Fatalf("no recovery within 45 s of killing the active node; last errors: %v", failures[max(0, len(failures)-3):])
	}
	for i, e := range failures {
		if i < 3 || i == len(failures)-1 {
			t.Logf("during the election: %v", e)
		}
	}
	t.Logf("recovered %v after killing the active node (%d failed calls in between)", recovered.Round(time.Millisecond), len(failures))
	st, err := w.ServerState(ctx)
	if err != nil || (st != openbao.StateActive && st != openbao.StateStandby) {
		t.Fatalf("ServerState after failover = %q, %v", st, err)
	}
	t.Logf("the node the plugin points at is now %s", st)
	// New keys and wraps work on the new leader.
	k2, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: acme},
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED, Region: region})
	if err != nil {
		t.Fatalf("CreateKey after failover: %v", err)
	}
	if _, err := w.Wrap(ctx, acme, k2.GetKeyId(), dk, aad); err != nil {
		t.Fatalf("Wrap after failover: %v", err)
	}
}
