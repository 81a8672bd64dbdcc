package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/apeirora/apeiro-cmk/pkg/netguard"
)

// fakeIdP is a minimal OIDC discovery + JWKS server over TLS on loopback (unit tests only; the real provider is
// Hydra, see hydra_test.go).
type fakeIdP struct {
	srv       *httptest.Server
	mu        sync.Mutex
	keys      []jose.JSONWebKey
	jwksHits  atomic.Int64
	discoHits atomic.Int64
	down      atomic.Bool
	// hang, when set, makes every request wait until the client gives up or the channel is closed (an IdP that
	// accepts connections and never answers).
	hang atomic.Pointer[chan struct{}]
}

func newFakeIdP(t testing.TB, pub ...jose.JSONWebKey) *fakeIdP {
	f := &fakeIdP{keys: pub}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if ch := f.hang.Load(); ch != nil {
			select {
			case <-*ch:
			case <-r.Context().Done():
				return
			}
		}
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			f.discoHits.Add(1)
			_ = json.NewEncoder(w).Encode(map[string]any{"issuer": f.srv.URL, "jwks_uri": f.srv.URL + "/jwks",
				"id_token_signing_alg_values_supported": []string{"RS256", "ES256"}})
		case "/jwks":
			f.jwksHits.Add(1)
			f.mu.Lock()
			defer f.mu.Unlock()
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: f.keys})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIdP) client() *http.Client {
	return netguard.NewClient(netguard.ClientOptions{AllowLoopback: true, TLSConfig: f.srv.Client().Transport.(*http.Transport).TLSClientConfig})
}

type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func newRSAKey(t testing.TB, kid string) signingKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, alg: jose.RS256, priv: k}
}

func newECKey(t testing.TB, kid string) signingKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, alg: jose.ES256, priv: k}
}

func (k signingKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

// sign signs raw payload bytes (which may deliberately be odd JSON) with extra headers.
func (k signingKey) signRaw(t testing.TB, payload []byte, headers map[jose.HeaderKey]any) string {
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for h, v := range headers {
		opts = opts.WithHeader(h, v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (k signingKey) sign(t testing.TB, claims map[string]any) string {
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return k.signRaw(t, b, nil)
}

// handMade builds a compact JWS from a header and payload and an HMAC over them with secret (nil: empty signature).
func handMade(header, payload string, secret []byte) string {
	enc := base64.RawURLEncoding
	in := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	if secret == nil {
		return in + "."
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + enc.EncodeToString(m.Sum(nil))
}

func pkixPEMBytes(t testing.TB, pub crypto.PublicKey) []byte {
	b, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func claimsFor(iss string, aud any, sub string, now time.Time, ttl time.Duration) map[string]any {
	return map[string]any{"iss": iss, "aud": aud, "sub": sub, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
}

func base64RawURL(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func typeMeta() metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func slogTo(w io.Writer, mu *sync.Mutex) *slog.Logger {
	return slog.New(slog.NewTextHandler(lockedWriter{w, mu}, nil))
}
