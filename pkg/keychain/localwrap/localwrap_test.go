package localwrap_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/keychain/localwrap"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/local"
)

func account(tenant, keyRef string) *cmkv1.Account {
	return &cmkv1.Account{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "main", Labels: map[string]string{cmkv1.TenantLabel: tenant}},
		Spec:       cmkv1.AccountSpec{Keystore: cmkv1.KeystoreLocal, KeyRef: keyRef, Region: "eu-central"},
	}
}

func newChain(t *testing.T) (*keychain.Chain, *localwrap.Wrapper) { return newChainTB(t) }

func newChainTB(t testing.TB) (*keychain.Chain, *localwrap.Wrapper) {
	t.Helper()
	w, err := localwrap.New(context.Background(), "dir: "+t.TempDir()+"\n")
	if err != nil {
		t.Fatal(err)
	}
	c := keychain.NewChain(nil)
	c.Register(cmkv1.KeystoreLocal, w)
	c.SetProvisioning(cmkv1.KeystoreLocal, true)
	return c, w
}

func TestNewNeedsSharedSecret(t *testing.T) {
	if _, err := localwrap.New(context.Background(), ""); !errors.Is(err, local.ErrNoSharedSecret) {
		t.Fatalf("New(in-memory) = %v, want ErrNoSharedSecret", err)
	}
	if _, err := localwrap.New(context.Background(), "nonsense: [\n"); err == nil {
		t.Fatal("New accepted invalid YAML")
	}
}

func TestWrapChain(t *testing.T) {
	ctx := context.Background()
	c, w := newChain(t)
	acme := account("acme", "acme-l1")
	globex := account("globex", "acme-l1") // same key name, other tenant

	if _, err := c.WrapWithAccount(ctx, acme, []byte("k"), nil); !errors.Is(err, keychain.ErrKeyNotFound) {
		t.Fatalf("wrap before the key exists = %v, want ErrKeyNotFound", err)
	}
	if created, err := c.EnsureL1Key(ctx, acme); err != nil || !created {
		t.Fatalf("EnsureL1Key = %v, %v; want created", created, err)
	}
	if created, err := c.EnsureL1Key(ctx, acme); err != nil || created {
		t.Fatalf("second EnsureL1Key = %v, %v; want existing", created, err)
	}
	material := bytes.Repeat([]byte{7}, 32)
	aad := map[string]string{"tenant": "acme", "key": "db"}
	wr, err := c.WrapWithAccount(ctx, acme, material, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(wr.Ciphertext, material) || wr.KeyVersion == "" {
		t.Fatalf("wrapped form leaks the material or has no version: %+v", wr)
	}
	got, err := c.UnwrapWithAccount(ctx, acme, wr, aad)
	if err != nil || !bytes.Equal(got, material) {
		t.Fatalf("unwrap = %x, %v", got, err)
	}

	t.Run("other aad", func(t *testing.T) {
		if _, err := c.UnwrapWithAccount(ctx, acme, wr, map[string]string{"tenant": "acme", "key": "other"}); !errors.Is(err, keychain.ErrIntegrity) {
			t.Fatalf("unwrap with other aad = %v, want ErrIntegrity", err)
		}
	})
	t.Run("tampered", func(t *testing.T) {
		bad := &keychain.Wrapped{Ciphertext: bytes.Clone(wr.Ciphertext), KeyVersion: wr.KeyVersion}
		bad.Ciphertext[len(bad.Ciphertext)-1] ^= 1
		if _, err := c.UnwrapWithAccount(ctx, acme, bad, aad); !errors.Is(err, keychain.ErrIntegrity) {
			t.Fatalf("unwrap tampered = %v, want ErrIntegrity", err)
		}
		if _, err := c.UnwrapWithAccount(ctx, acme, &keychain.Wrapped{Ciphertext: []byte("garbage")}, aad); !errors.Is(err, keychain.ErrIntegrity) {
			t.Fatalf("unwrap garbage = %v, want ErrIntegrity", err)
		}
	})
	t.Run("another tenant naming the same key reaches its own instance", func(t *testing.T) {
		if _, err := c.UnwrapWithAccount(ctx, globex, wr, aad); !errors.Is(err, keychain.ErrKeyNotFound) {
			t.Fatalf("globex unwrapping acme's key = %v, want ErrKeyNotFound", err)
		}
	})
	t.Run("no tenant label", func(t *testing.T) {
		a := account("acme", "acme-l1")
		a.Labels = nil
		if _, err := c.WrapWithAccount(ctx, a, material, aad); err == nil {
			t.Fatal("wrap without a tenant label succeeded")
		}
	})
	t.Run("rotation", func(t *testing.T) {
		v0, err := c.L1KeyVersion(ctx, acme)
		if err != nil || v0 != wr.KeyVersion {
			t.Fatalf("L1KeyVersion = %q, %v; want %q", v0, err, wr.KeyVersion)
		}
		cfg, _ := c.InstanceConfig(acme)
		v1, err := w.Rotate(ctx, cfg, acme.Spec.KeyRef)
		if err != nil || v1 == v0 {
			t.Fatalf("Rotate = %q, %v", v1, err)
		}
		if cur, _ := c.L1KeyVersion(ctx, acme); cur != v1 {
			t.Fatalf("L1KeyVersion after rotation = %q, want %q", cur, v1)
		}
		// Material wrapped under the old version still unwraps; a new wrap uses the new version.
		if got, err := c.UnwrapWithAccount(ctx, acme, wr, aad); err != nil || !bytes.Equal(got, material) {
			t.Fatalf("old version unwrap = %v", err)
		}
		if nw, err := c.WrapWithAccount(ctx, acme, material, aad); err != nil || nw.KeyVersion != v1 {
			t.Fatalf("new wrap version = %+v, %v", nw, err)
		}
	})
	t.Run("disabled key", func(t *testing.T) {
		cfg, _ := c.InstanceConfig(acme)
		if err := w.Disable(ctx, cfg, acme.Spec.KeyRef); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WrapWithAccount(ctx, acme, material, aad); !errors.Is(err, keychain.ErrKeyDisabled) {
			t.Fatalf("wrap with a disabled key = %v, want ErrKeyDisabled", err)
		}
	})
}

func TestEncodeAAD(t *testing.T) {
	a := localwrap.EncodeAAD(map[string]string{"a": "b=c", "d": ""})
	b := localwrap.EncodeAAD(map[string]string{"a": "b", "c=d": ""})
	if bytes.Equal(a, b) {
		t.Fatal("different aad maps encode identically")
	}
	if !bytes.Equal(localwrap.EncodeAAD(map[string]string{"x": "1", "y": "2"}), localwrap.EncodeAAD(map[string]string{"y": "2", "x": "1"})) {
		t.Fatal("encoding depends on map order")
	}
}
