package openbao

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
)

func ppStruct(v any) *structpb.Struct {
	s, _ := structpb.NewStruct(map[string]any{ImportProviderParams: v})
	return s
}

func TestParseProviderParams(t *testing.T) {
	good, _ := json.Marshal(importParams{V: 1, Mount: "transit/acme", Key: "k1", Type: "aes256-gcm96", Token: strings.Repeat("ab", 32)})
	cases := []struct {
		name string
		in   *structpb.Struct
		ok   bool
	}{
		{"issued", ppStruct(string(good)), true},
		{"missing", &structpb.Struct{}, false},
		{"not a string", ppStruct(map[string]any{"v": 1}), false},
		{"opaque", ppStruct("forged"), false},
		{"other version", ppStruct(strings.Replace(string(good), `"v":1`, `"v":2`, 1)), false},
		{"short token", ppStruct(strings.Replace(string(good), strings.Repeat("ab", 32), "abcd", 1)), false},
		{"token not hex", ppStruct(strings.Replace(string(good), strings.Repeat("ab", 32), strings.Repeat("zz", 32), 1)), false},
		{"unknown field", ppStruct(strings.Replace(string(good), `{`, `{"admin":true,`, 1)), false},
		{"no key", ppStruct(strings.Replace(string(good), `"key":"k1"`, `"key":""`, 1)), false},
		{"oversized", ppStruct(strings.Repeat(" ", maxProviderParamsBytes+1)), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseProviderParams(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("parseProviderParams = %+v, %v", p, err)
			}
			if err != nil {
				if e, ok := err.(*Error); !ok || e.Code != codes.InvalidArgument {
					t.Fatalf("want InvalidArgument, got %v", err)
				}
			}
		})
	}
}

func TestDecodeWrappedMaterial(t *testing.T) {
	raw := make([]byte, wrappingKeyBytes+40) // OAEP head + RFC 5649 wrap of 32 bytes
	cases := []struct {
		name, in string
		ok       bool
	}{
		{"std", base64.StdEncoding.EncodeToString(raw), true},
		{"raw url", base64.RawURLEncoding.EncodeToString(raw), true},
		{"empty", "  ", false},
		{"not base64", "%%%", false},
		{"head only", base64.StdEncoding.EncodeToString(raw[:wrappingKeyBytes]), false},
		{"body not a multiple of 8", base64.StdEncoding.EncodeToString(raw[:wrappingKeyBytes+21]), false},
		{"oversized", strings.Repeat("A", base64.StdEncoding.EncodedLen(maxWrappedMaterialBytes)+4), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := decodeWrappedMaterial(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("decodeWrappedMaterial = %d bytes, %v", len(b), err)
			}
		})
	}
}

func TestCheckWrappingKey(t *testing.T) {
	for _, in := range []string{"", "not pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"} {
		if err := checkWrappingKey(in); err == nil {
			t.Errorf("checkWrappingKey(%q) accepted", in)
		}
	}
}

func FuzzParseProviderParams(f *testing.F) {
	good, _ := json.Marshal(importParams{V: 1, Mount: "transit/acme", Key: "k1", Type: "aes256-gcm96", Token: strings.Repeat("0f", 32)})
	for _, s := range []string{string(good), "", "forged", `{"v":1}`, `{"v":1,"token":"` + strings.Repeat("a", 64) + `"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseProviderParams(ppStruct(s))
		if err == nil && (p.V != 1 || len(p.Token) != 64 || p.Key == "" || p.Mount == "") {
			t.Fatalf("accepted %q as %+v", s, p)
		}
	})
}

func FuzzDecodeWrappedMaterial(f *testing.F) {
	f.Add(base64.StdEncoding.EncodeToString(make([]byte, wrappingKeyBytes+40)))
	f.Add("")
	f.Add("====")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := decodeWrappedMaterial(s)
		if err == nil && (len(b) < wrappingKeyBytes+16 || (len(b)-wrappingKeyBytes)%8 != 0 || len(b) > maxWrappedMaterialBytes+3) {
			t.Fatalf("accepted %d bytes", len(b))
		}
	})
}
