package keywrap

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 5649 section 6 test vectors (192-bit KEK).
func TestWrapPadRFC5649(t *testing.T) {
	kek := unhex(t, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	for _, tc := range []struct{ key, wrapped string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	} {
		got, err := WrapPad(kek, unhex(t, tc.key))
		if err != nil || hex.EncodeToString(got) != tc.wrapped {
			t.Fatalf("wrap(%s) = %x, %v; want %s", tc.key, got, err, tc.wrapped)
		}
		back, err := UnwrapPad(kek, got)
		if err != nil || hex.EncodeToString(back) != tc.key {
			t.Fatalf("unwrap = %x, %v", back, err)
		}
	}
}

func TestUnwrapPadRejects(t *testing.T) {
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	msg := bytes.Repeat([]byte{7}, 1217) // a PKCS#8 RSA key is about this long
	w, err := WrapPad(kek, msg)
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{
		"empty":     nil,
		"short":     w[:8],
		"unaligned": w[:len(w)-3],
		"flipped":   append(append([]byte(nil), w[:len(w)-1]...), w[len(w)-1]^1),
		"truncated": w[:len(w)-8],
	} {
		if _, err := UnwrapPad(kek, in); err == nil {
			t.Errorf("%s: unwrap succeeded", name)
		}
	}
	other := make([]byte, 32)
	if _, err := UnwrapPad(other, w); err == nil {
		t.Error("wrong KEK: unwrap succeeded")
	}
}

// FuzzUnwrapPad: arbitrary input never panics, and what wraps unwraps.
func FuzzUnwrapPad(f *testing.F) {
	f.Add([]byte("material"), []byte{})
	f.Add(bytes.Repeat([]byte{1}, 40), bytes.Repeat([]byte{0xA6}, 24))
	kek := bytes.Repeat([]byte{3}, 32)
	f.Fuzz(func(t *testing.T, msg, junk []byte) {
		_, _ = UnwrapPad(kek, junk)
		if len(msg) == 0 {
			return
		}
		w, err := WrapPad(kek, msg)
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnwrapPad(kek, w)
		if err != nil || !bytes.Equal(back, msg) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
