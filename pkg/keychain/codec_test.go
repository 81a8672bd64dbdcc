package keychain_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

func TestWrappedCodec(t *testing.T) {
	w := &keychain.Wrapped{Ciphertext: []byte("ciphertext"), KeyVersion: "v-0002"}
	b, err := keychain.EncodeWrapped(w)
	if err != nil {
		t.Fatal(err)
	}
	got, err := keychain.DecodeWrapped(b)
	if err != nil || !bytes.Equal(got.Ciphertext, w.Ciphertext) || got.KeyVersion != w.KeyVersion {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// A version-less Wrapped (aws) round-trips too.
	b, _ = keychain.EncodeWrapped(&keychain.Wrapped{Ciphertext: []byte{1}})
	if got, err := keychain.DecodeWrapped(b); err != nil || got.KeyVersion != "" || !bytes.Equal(got.Ciphertext, []byte{1}) {
		t.Fatalf("no version: %+v, %v", got, err)
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"wrong magic", []byte("XXXX\x00\x00abc")},
		{"header only", []byte("L1W1\x00\x00")},
		{"version longer than input", []byte("L1W1\x00\x09v1")},
		{"version too long", append([]byte("L1W1\xff\xff"), bytes.Repeat([]byte{'a'}, 70000)...)},
		{"oversized", append([]byte("L1W1\x00\x00"), make([]byte, keychain.MaxWrappedBytes+1024)...)},
	} {
		if _, err := keychain.DecodeWrapped(tc.in); !errors.Is(err, keychain.ErrIntegrity) {
			t.Errorf("%s: DecodeWrapped = %v, want ErrIntegrity", tc.name, err)
		}
	}
	if _, err := keychain.EncodeWrapped(&keychain.Wrapped{}); err == nil {
		t.Error("EncodeWrapped accepted an empty ciphertext")
	}
	if _, err := keychain.EncodeWrapped(&keychain.Wrapped{Ciphertext: []byte{1}, KeyVersion: strings.Repeat("v", 300)}); err == nil {
		t.Error("EncodeWrapped accepted an oversized version")
	}
}

func TestParsePayload(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"wrong magic", []byte("L1W1\x00\x01k")},
		{"zero-length key ID", []byte("SEK1\x00\x00rest")},
		{"truncated key ID", []byte("SEK1\x00\x05ab")},
	} {
		if _, _, err := keychain.ParsePayload(tc.in); !errors.Is(err, keychain.ErrIntegrity) {
			t.Errorf("%s: ParsePayload = %v, want ErrIntegrity", tc.name, err)
		}
	}
	id, rest, err := keychain.ParsePayload([]byte("SEK1\x00\x03abcNONCE"))
	if err != nil || id != "abc" || string(rest) != "NONCE" {
		t.Fatalf("ParsePayload = %q %q %v", id, rest, err)
	}
}

func TestSecretName(t *testing.T) {
	if got := keychain.SecretName("db"); got != "db-wrapped-key" {
		t.Errorf("SecretName(db) = %q", got)
	}
	long := strings.Repeat("a", 253)
	got := keychain.SecretName(long)
	if len(got) > 253 || !strings.HasSuffix(got, "-wrapped-key") {
		t.Errorf("SecretName(253 chars) = %q (%d chars)", got, len(got))
	}
	if keychain.SecretName(long) == keychain.SecretName(strings.Repeat("a", 252)+"b") {
		t.Error("long names that differ in the tail map to the same Secret")
	}
	if v := keychain.ServiceKeyLabelValue(long); len(v) > 63 {
		t.Errorf("label value of %d chars", len(v))
	}
}

// FuzzDecodeWrapped: no input panics, and whatever decodes re-encodes to the same bytes.
func FuzzDecodeWrapped(f *testing.F) {
	good, _ := keychain.EncodeWrapped(&keychain.Wrapped{Ciphertext: []byte("ct"), KeyVersion: "v1"})
	f.Add(good)
	f.Add([]byte("L1W1\x00"))
	f.Add([]byte("L1W1\xff\xffx"))
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := keychain.DecodeWrapped(b)
		if err != nil {
			if !errors.Is(err, keychain.ErrIntegrity) {
				t.Fatalf("error %v does not wrap ErrIntegrity", err)
			}
			return
		}
		again, err := keychain.EncodeWrapped(w)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %q gave %q, %v", b, again, err)
		}
	})
}

// FuzzParsePayload: no input panics; a parsed key ID is non-empty and bounded.
func FuzzParsePayload(f *testing.F) {
	f.Add([]byte("SEK1\x00\x03abcNONCE"))
	f.Add([]byte("SEK1\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, rest, err := keychain.ParsePayload(b)
		if err != nil {
			if !errors.Is(err, keychain.ErrIntegrity) {
				t.Fatalf("error %v does not wrap ErrIntegrity", err)
			}
			return
		}
		if id == "" || len(id) > 256 || len(rest) > len(b) {
			t.Fatalf("ParsePayload(%q) = %q, %d bytes rest", b, id, len(rest))
		}
	})
}
