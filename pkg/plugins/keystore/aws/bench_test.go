package aws_test

import (
	"testing"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/moto"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/aws"
)

// Benchmarks against moto (a single-threaded Python server on loopback: the numbers bound the plugin's overhead
// plus moto's, not AWS latency). Recorded in docs/performance.md.

func benchSetup(b *testing.B) (*moto.Server, string) {
	srv := moto.Start(b, moto.Options{Tenants: []string{"acme"}})
	srv.Setenv(b)
	return srv, createKey(b, aws.NewOperations(), instance(b, "acme", srv.TenantRoleARN("acme")))
}

// BenchmarkWrapUnwrap: wrap (DescribeKey + Encrypt) and unwrap (Decrypt) of a 32-byte data key with warm credentials.
func BenchmarkWrapUnwrap(b *testing.B) {
	srv, keyID := benchSetup(b)
	w := aws.NewWrapper(nil)
	cfg := instance(b, "acme", srv.TenantRoleARN("acme"))
	dk := make([]byte, 32)
	aad := map[string]string{"tenant": "acme", "key": "bench"}
	ctx := testCtx(b)
	b.Run("wrap", func(b *testing.B) {
		for b.Loop() {
			if _, err := w.Wrap(ctx, cfg, keyID, dk, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	wrapped, err := w.Wrap(ctx, cfg, keyID, dk, aad)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("unwrap", func(b *testing.B) {
		for b.Loop() {
			if _, err := w.Unwrap(ctx, cfg, keyID, wrapped, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unwrap-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := w.Unwrap(ctx, cfg, keyID, wrapped, aad); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkCredentialCache: one Unwrap with the tenant's credentials cached (hit) vs with a fresh Wrapper, i.e. the
// web-identity exchange and AssumeRole before the Decrypt (miss).
func BenchmarkCredentialCache(b *testing.B) {
	srv, keyID := benchSetup(b)
	cfg := instance(b, "acme", srv.TenantRoleARN("acme"))
	ctx := testCtx(b)
	warm := aws.NewWrapper(nil)
	wrapped, err := warm.Wrap(ctx, cfg, keyID, make([]byte, 32), nil)
	if err != nil {
		b.Fatal(err)
	}
	unwrap := func(b *testing.B, w *aws.Wrapper, wr *keychain.Wrapped) {
		if _, err := w.Unwrap(ctx, cfg, keyID, wr, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("hit", func(b *testing.B) {
		for b.Loop() {
			unwrap(b, warm, wrapped)
		}
	})
	b.Run("miss", func(b *testing.B) {
		for b.Loop() {
			unwrap(b, aws.NewWrapper(nil), wrapped)
		}
	})
}
