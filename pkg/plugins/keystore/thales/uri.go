package thales

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// KeyRef names a key: a PKCS#11 URI (RFC 7512) as an Account's spec.keyRef carries it, e.g.
// pkcs11:token=apeiro;object=acme-l1;type=secret-key, or a bare object label (CMK's key ids). The token defaults to
// the first configured token.
type KeyRef struct {
	Token  string // token label, "" = default token
	Object string // CKA_LABEL
	ID     []byte // CKA_ID, optional
	Type   string // "", "secret-key" or "private"
}

// maxKeyRefBytes bounds what ParseKeyRef reads.
const maxKeyRefBytes = 1024

// ParseKeyRef parses a PKCS#11 URI or a bare label. PIN attributes (pin-value, pin-source) are refused: the PIN
// comes from the plugin configuration's reference, never from a key reference.
func ParseKeyRef(s string) (KeyRef, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return KeyRef{}, errors.New("key reference is empty")
	}
	if len(s) > maxKeyRefBytes {
		return KeyRef{}, fmt.Errorf("key reference is longer than %d bytes", maxKeyRefBytes)
	}
	if !strings.HasPrefix(strings.ToLower(s), "pkcs11:") {
		if !validObjectLabel(s) {
			return KeyRef{}, fmt.Errorf("key label %q must be 1..%d printable characters without ';', '?' or '/'", truncate(s), maxObjectLabelBytes)
		}
		return KeyRef{Object: s}, nil
	}
	rest := s[len("pkcs11:"):]
	path, query, _ := strings.Cut(rest, "?")
	var k KeyRef
	seen := map[string]bool{}
	if path != "" {
		for _, attr := range strings.Split(path, ";") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || name == "" {
				return KeyRef{}, fmt.Errorf("PKCS#11 URI attribute %q is not name=value", truncate(attr))
			}
			name = strings.ToLower(name)
			if seen[name] {
				return KeyRef{}, fmt.Errorf("PKCS#11 URI attribute %q appears twice", name)
			}
			seen[name] = true
			val, err := pctDecode(raw)
			if err != nil {
				return KeyRef{}, fmt.Errorf("PKCS#11 URI attribute %s: %w", name, err)
			}
			switch name {
			case "token":
				if !tokenLabelRE.MatchString(string(val)) {
					return KeyRef{}, fmt.Errorf("PKCS#11 URI token must be 1..%d printable ASCII characters", maxTokenLabelBytes)
				}
				k.Token = string(val)
			case "object":
				if !validObjectLabel(string(val)) {
					return KeyRef{}, fmt.Errorf("PKCS#11 URI object must be 1..%d printable characters", maxObjectLabelBytes)
				}
				k.Object = string(val)
			case "id":
				if len(val) == 0 || len(val) > 128 {
					return KeyRef{}, errors.New("PKCS#11 URI id must be 1..128 bytes")
				}
				k.ID = val
			case "type":
				switch string(val) {
				case "secret-key", "private":
					k.Type = string(val)
				default:
					return KeyRef{}, fmt.Errorf("PKCS#11 URI type %q does not name a key this keystore uses (secret-key, private)", truncate(string(val)))
				}
			case "manufacturer", "model", "serial", "slot-description", "slot-manufacturer", "slot-id",
				"library-manufacturer", "library-description", "library-version":
				// Informative: the token is selected by label from the plugin's configuration.
			default:
				if !strings.HasPrefix(name, "x-") {
					return KeyRef{}, fmt.Errorf("PKCS#11 URI attribute %q is not known (RFC 7512)", truncate(name))
				}
			}
		}
	}
	if query != "" {
		for _, q := range strings.Split(query, "&") {
			name, _, _ := strings.Cut(q, "=")
			switch strings.ToLower(name) {
			case "pin-value", "pin-source":
				return KeyRef{}, fmt.Errorf("PKCS#11 URI %s is refused: %w", strings.ToLower(name), ErrInlinePIN)
			case "module-name", "module-path":
				return KeyRef{}, fmt.Errorf("PKCS#11 URI %s is refused: the module is chosen by the platform configuration", strings.ToLower(name))
			}
		}
	}
	if k.Object == "" && k.ID == nil {
		return KeyRef{}, errors.New("PKCS#11 URI must name the key by object (its label) or id")
	}
	return k, nil
}

// String renders the reference as a PKCS#11 URI.
func (k KeyRef) String() string {
	var parts []string
	if k.Token != "" {
		parts = append(parts, "token="+pctEncode([]byte(k.Token)))
	}
	if k.Object != "" {
		parts = append(parts, "object="+pctEncode([]byte(k.Object)))
	}
	if k.ID != nil {
		parts = append(parts, "id="+pctEncodeAll(k.ID))
	}
	if k.Type != "" {
		parts = append(parts, "type="+k.Type)
	}
	return "pkcs11:" + strings.Join(parts, ";")
}

func validObjectLabel(s string) bool {
	if s == "" || len(s) > maxObjectLabelBytes {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == ';' || r == '?' || r == '/' {
			return false
		}
	}
	return true
}

func pctDecode(s string) ([]byte, error) {
	v, err := url.PathUnescape(s)
	if err != nil {
		return nil, errors.New("invalid percent-encoding")
	}
	return []byte(v), nil
}

// pctEncode escapes everything outside RFC 7512's unreserved path characters.
func pctEncode(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strings.IndexByte("-._~:[]@!$'()*+,=&", c) >= 0 {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	return sb.String()
}

func pctEncodeAll(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		fmt.Fprintf(&sb, "%%%02X", c)
	}
	return sb.String()
}
