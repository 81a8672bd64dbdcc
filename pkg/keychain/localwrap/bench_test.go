package localwrap_test

import (
	"bytes"
	"context"
	"testing"
)

// BenchmarkWrapUnwrapLocal: wrapping and unwrapping a 32-byte service key with a local keystore L1 key kept in a
// directory (each call reads and unseals the key record, then AES-256-GCM).
func BenchmarkWrapUnwrapLocal(b *testing.B) {
	ctx := context.Background()
	c, _ := newChainTB(b)
	a := account("acme", "acme-l1")
	if _, err := c.EnsureL1Key(ctx, a); err != nil {
		b.Fatal(err)
	}
	material := bytes.Repeat([]byte{1}, 32)
	aad := map[string]string{"tenant": "acme", "namespace": "acme", "serviceEncryptionKey": "db", "keyID": "uid"}
	b.Run("wrap", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.WrapWithAccount(ctx, a, material, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	wr, err := c.WrapWithAccount(ctx, a, material, aad)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("unwrap", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.UnwrapWithAccount(ctx, a, wr, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unwrap-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.UnwrapWithAccount(ctx, a, wr, aad); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
