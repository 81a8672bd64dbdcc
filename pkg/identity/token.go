package identity

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MaxTokenBytes bounds a bearer token. Real access tokens, ID tokens and JWT-SVIDs are a few KiB; Kubernetes'
// own limits are of the same order. Anything larger is refused before a byte of it is decoded.
const MaxTokenBytes = 16 << 10

// AllowedAlgorithms is the signature algorithm allowlist: asymmetric algorithms only. "none" can never verify, and
// HMAC is excluded because a verifier holding only public keys would otherwise accept a token "signed" with the
// public key as the HMAC secret (algorithm confusion).
var AllowedAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// ErrMalformed means the token is not a well-formed compact JWS of the accepted shape. Its text is safe to return
// to an unauthenticated caller; the wrapped detail is for logs only.
var ErrMalformed = errors.New("malformed token")

// rawToken is a compact JWS whose shape has been checked but whose signature has not.
type rawToken struct {
	alg, kid string
	// claims is the decoded payload, top-level keys unique.
	claims map[string]json.RawMessage
}

// parseUnverified checks everything about a token that needs no key: size, the three-part compact form, strict
// base64url, JSON objects without duplicate keys (two parsers may otherwise disagree on which "sub" or "aud"
// counts), an allowlisted alg and no "crit" header (no extension is understood here, so RFC 7515 §4.1.11 requires
// rejecting any). Every error wraps ErrMalformed.
func parseUnverified(token string) (*rawToken, error) {
	if len(token) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if len(token) > MaxTokenBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxTokenBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: want 3 dot-separated parts, got %d (JWE and JSON serialisation are not accepted)", ErrMalformed, len(parts))
	}
	if parts[2] == "" {
		return nil, fmt.Errorf("%w: unsigned", ErrMalformed)
	}
	hdrJSON, err := base64.RawURLEncoding.Strict().DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(parts[2]); err != nil {
		return nil, fmt.Errorf("%w: signature is not base64url", ErrMalformed)
	}
	hdr, err := uniqueObject(hdrJSON)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	claims, err := uniqueObject(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	if _, ok := hdr["crit"]; ok {
		return nil, fmt.Errorf("%w: critical header extensions are not supported", ErrMalformed)
	}
	t := &rawToken{claims: claims}
	if err := stringField(hdr, "alg", &t.alg); err != nil || t.alg == "" {
		return nil, fmt.Errorf("%w: header has no alg", ErrMalformed)
	}
	if !slices.Contains(AllowedAlgorithms, t.alg) {
		return nil, fmt.Errorf("%w: algorithm %q is not allowed", ErrMalformed, t.alg)
	}
	if err := stringField(hdr, "kid", &t.kid); err != nil {
		return nil, fmt.Errorf("%w: kid is not a string", ErrMalformed)
	}
	var typ string
	if err := stringField(hdr, "typ", &typ); err != nil {
		return nil, fmt.Errorf("%w: typ is not a string", ErrMalformed)
	}
	if _, ok := hdr["zip"]; ok {
		// Compression only exists for JWE; in a JWS it is a decompression-bomb vector.
		return nil, fmt.Errorf("%w: zip header not allowed", ErrMalformed)
	}
	return t, nil
}

// claim decodes one claim into v; a missing claim leaves v unchanged and is not an error.
func (t *rawToken) claim(name string, v any) error {
	raw, ok := t.claims[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("claim %q has the wrong type", name)
	}
	return nil
}

func stringField(m map[string]json.RawMessage, name string, out *string) error {
	raw, ok := m[name]
	if !ok {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// uniqueObject decodes a JSON object and fails on duplicate top-level keys or trailing data.
func uniqueObject(b []byte) (map[string]json.RawMessage, error) {
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
			return nil, fmt.Errorf("duplicate member %q", key)
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
		return nil, errors.New("trailing data after the JSON object")
	}
	return out, nil
}

// audience is the "aud" claim: a string or an array of strings (RFC 7519 §4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	*a = l
	return nil
}
