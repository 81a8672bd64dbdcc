package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// signCompact signs payload with priv under alg via go-jose (the reference implementation) and returns the
// signing input and the decoded signature.
func signCompact(t *testing.T, alg string, priv crypto.Signer, payload string) (string, []byte) {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: priv}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	c, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	rt, err := parseUnverified(c)
	if err != nil {
		t.Fatalf("%s token: %v", alg, err)
	}
	return rt.signingInput, rt.sig
}

// TestVerifyJWS: every allowlisted algorithm verifies what go-jose signs; a signature never verifies under a key
// of the wrong type or curve, a tampered input, a truncated signature or an algorithm outside the allowlist.
func TestVerifyJWS(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	keys := map[string]crypto.Signer{"RS256": rsaKey, "RS384": rsaKey, "RS512": rsaKey, "PS256": rsaKey, "PS384": rsaKey, "PS512": rsaKey,
		"ES256": p256, "ES384": p384, "ES512": p521, "EdDSA": edKey}
	if len(keys) != len(AllowedAlgorithms) {
		t.Fatalf("test covers %d algorithms, the allowlist has %d", len(keys), len(AllowedAlgorithms))
	}
	payload := `{"iss":"https://idp.example","sub":"alice","exp":4102444800}`
	for _, alg := range AllowedAlgorithms {
		t.Run(alg, func(t *testing.T) {
			priv := keys[alg]
			in, sig := signCompact(t, alg, priv, payload)
			if err := verifyJWS(priv.Public(), alg, in, sig); err != nil {
				t.Fatalf("valid %s signature: %v", alg, err)
			}
			if verifyJWS(priv.Public(), alg, in+"x", sig) == nil {
				t.Error("tampered signing input verifies")
			}
			bad := bytes.Clone(sig)
			bad[len(bad)/2] ^= 1
			if verifyJWS(priv.Public(), alg, in, bad) == nil {
				t.Error("tampered signature verifies")
			}
			if verifyJWS(priv.Public(), alg, in, sig[:len(sig)-1]) == nil {
				t.Error("truncated signature verifies")
			}
			for other, k := range keys {
				if k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(priv.Public()) {
					continue // the RSA algorithms share one key; confusion between them is checked below
				}
				if verifyJWS(k.Public(), alg, in, sig) == nil {
					t.Errorf("%s signature verifies under the %s key", alg, other)
				}
			}
			// The same key and signature under another algorithm name never verify (algorithm confusion).
			for _, other := range AllowedAlgorithms {
				if other != alg && verifyJWS(priv.Public(), other, in, sig) == nil {
					t.Errorf("%s signature verifies as %s", alg, other)
				}
			}
		})
	}
	for _, alg := range []string{"HS256", "none", "", "ES256K", "RSA-OAEP"} {
		if err := verifyJWS(rsaKey.Public(), alg, "a.b", []byte("x")); err == nil {
			t.Errorf("algorithm %q verifies", alg)
		}
	}
	if err := verifyJWS([]byte("an HMAC secret"), "RS256", "a.b", []byte("x")); err == nil {
		t.Error("a symmetric key verifies")
	}
}

// refUniqueObject is the json.Decoder implementation uniqueObject replaced; FuzzUniqueObject compares the two.
func refUniqueObject(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, errors.New("not JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, errors.New("invalid JSON")
		}
		key, ok := kt.(string)
		if !ok {
			return nil, errors.New("invalid JSON")
		}
		if _, dup := out[key]; dup {
			return nil, errors.New("duplicate")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errors.New("invalid JSON")
		}
		out[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, errors.New("invalid JSON")
	}
	if len(bytes.TrimSpace(b[dec.InputOffset():])) != 0 {
		return nil, errors.New("trailing data")
	}
	return out, nil
}

func TestUniqueObject(t *testing.T) {
	for _, tc := range []struct {
		in   string
		keys []string
		err  string
	}{
		{in: `{}`},
		{in: ` { "a" : 1 , "b":[1,{"c":"}"}],"d":{"e":"\"]"},"f":null,"g":true,"h":-1.5e3 } `, keys: []string{"a", "b", "d", "f", "g", "h"}},
		{in: `{"a":1,"a":2}`, err: "duplicate"},
		{in: `{"a":1,"\u0061":2}`, err: "duplicate"},
		{in: `{"a":{"x":1,"x":2}}`, keys: []string{"a"}}, // only the top level must be unique
		{in: `{"a":1}x`, err: "invalid"},
		{in: `{"a":1}{}`, err: "invalid"},
		{in: `[1]`, err: "not a JSON object"},
		{in: `"x"`, err: "not a JSON object"},
		{in: ``, err: "not a JSON object"},
		{in: `{"a":}`, err: "invalid"},
		{in: `{"a":1,}`, err: "invalid"},
	} {
		got, err := uniqueObject([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if len(got) != len(tc.keys) {
			t.Errorf("%s: %d members, want %v", tc.in, len(got), tc.keys)
		}
		ref, _ := refUniqueObject([]byte(tc.in))
		if !maps.EqualFunc(got, ref, func(a, b json.RawMessage) bool { return bytes.Equal(a, b) }) {
			t.Errorf("%s: %q, json.Decoder says %q", tc.in, got, ref)
		}
	}
}

// FuzzUniqueObject: the hand-written scanner accepts exactly what the json.Decoder version accepted (except
// trailing non-JSON whitespace such as \v, which it refuses) and yields the same members byte for byte.
func FuzzUniqueObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"b":"x"}`, `{"a":1,"a":2}`, `{"a":[{"b":"]"}],"c":{"d":"\\"}}`, `{"\u00e9":1,"é":2}`, "{\"a\":\"\xff\",\"\xfe\":1}", `{"a":1}x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := uniqueObject(b)
		ref, rerr := refUniqueObject(b)
		switch {
		case err == nil && rerr != nil:
			t.Fatalf("accepted %q, json.Decoder refused it: %v", b, rerr)
		case err != nil && rerr == nil:
			if !json.Valid(b) && json.Valid(bytes.TrimSpace(b)) {
				return // trailing Unicode whitespace: refused on purpose
			}
			t.Fatalf("refused %q (%v), json.Decoder accepted it", b, err)
		case err == nil:
			if !maps.EqualFunc(got, ref, func(a, b json.RawMessage) bool { return bytes.Equal(a, b) }) {
				t.Fatalf("%q: %q, json.Decoder says %q", b, got, ref)
			}
		}
	})
}
