package identity

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
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
	// signingInput is "<header>.<payload>" as received; sig the decoded signature. The signature is checked over
	// exactly these bytes, so what was shape-checked above is what gets verified (no second parse).
	signingInput string
	sig          []byte
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
	if n := strings.Count(token, "."); n != 2 {
		return nil, fmt.Errorf("%w: want 3 dot-separated parts, got %d (JWE and JSON serialisation are not accepted)", ErrMalformed, n+1)
	}
	d1 := strings.IndexByte(token, '.')
	d2 := strings.LastIndexByte(token, '.')
	parts := [3]string{token[:d1], token[d1+1 : d2], token[d2+1:]}
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
	sig, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
	if err != nil {
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
	t := &rawToken{claims: claims, signingInput: token[:d2], sig: sig}
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

// claim decodes one claim into v; a missing claim leaves v unchanged and is not an error. Plain strings and
// numbers take a fast path with the same result as json.Unmarshal (they are most claims of every token).
func (t *rawToken) claim(name string, v any) error {
	raw, ok := t.claims[name]
	if !ok {
		return nil
	}
	switch out := v.(type) {
	case *string:
		if s, ok := plainString(raw); ok {
			*out = s
			return nil
		}
	case **float64:
		if f, ok := plainNumber(raw); ok {
			*out = &f
			return nil
		}
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
	if s, ok := plainString(raw); ok {
		*out = s
		return nil
	}
	return json.Unmarshal(raw, out)
}

// plainString returns a JSON string without escapes whose bytes are valid UTF-8 (what json.Unmarshal would
// return for it); anything else is left to json.Unmarshal.
func plainString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	body := raw[1 : len(raw)-1]
	if bytes.IndexByte(body, '\\') >= 0 || bytes.IndexByte(body, '"') >= 0 || !utf8.Valid(body) {
		return "", false
	}
	return string(body), true
}

// plainNumber parses a JSON number (already validated as JSON by uniqueObject) like json.Unmarshal into float64.
func plainNumber(raw []byte) (float64, bool) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return f, err == nil
}

// uniqueObject decodes a JSON object and fails on duplicate top-level keys or trailing data. It validates the
// whole input with json.Valid and then walks the top level by hand, keeping each member's raw value: one pass
// over the bytes instead of json.Decoder's token stream (which dominated token parsing). Every index is bounds-
// checked anyway, so a bug here is an error, not a panic; FuzzUniqueObject compares it with json.Decoder.
func uniqueObject(b []byte) (map[string]json.RawMessage, error) {
	if !json.Valid(b) {
		if i := skipWS(b, 0); i < len(b) && b[i] == '{' {
			return nil, errors.New("invalid JSON")
		}
		return nil, errors.New("not a JSON object")
	}
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, errors.New("not a JSON object")
	}
	bad := errors.New("invalid JSON")
	out := make(map[string]json.RawMessage, 16)
	if i = skipWS(b, i+1); i < len(b) && b[i] == '}' {
		return out, nil
	}
	for i < len(b) {
		if b[i] != '"' {
			return nil, bad
		}
		end := skipString(b, i)
		if end < 0 {
			return nil, bad
		}
		key, err := decodeKey(b[i:end])
		if err != nil {
			return nil, bad
		}
		if i = skipWS(b, end); i >= len(b) || b[i] != ':' {
			return nil, bad
		}
		i = skipWS(b, i+1)
		vend := skipValue(b, i)
		if vend < 0 {
			return nil, bad
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("duplicate member %q", key)
		}
		out[key] = json.RawMessage(b[i:vend:vend])
		if i = skipWS(b, vend); i >= len(b) {
			return nil, bad
		}
		switch b[i] {
		case '}':
			return out, nil
		case ',':
			i = skipWS(b, i+1)
		default:
			return nil, bad
		}
	}
	return nil, bad
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] (a quote), or -1.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index after the JSON value starting at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); {
			switch b[j] {
			case '"':
				if j = skipString(b, j); j < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
			j++
		}
		return -1
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}

// decodeKey unquotes a member name exactly as encoding/json does (escapes decoded, invalid UTF-8 replaced).
func decodeKey(raw []byte) (string, error) {
	if s, ok := plainString(raw); ok {
		return s, nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
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
