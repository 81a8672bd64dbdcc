package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func review(token string) string {
	b, _ := json.Marshal(authenticationv1.TokenReview{TypeMeta: typeMeta(), Spec: authenticationv1.TokenReviewSpec{Token: token}})
	return string(b)
}

func TestTokenReviewHandler(t *testing.T) {
	f := newFixture(t)
	h := &TokenReviewHandler{Auth: f.auth, Log: quietLog()}
	good := f.key.sign(t, f.claims())
	expired := f.key.sign(t, claimsFor(f.iss, testAud, "alice", f.clock.Now().Add(-time.Hour), time.Minute))
	cases := []struct {
		name, method, ctype, body string
		code                      int
		authenticated             bool
		reason                    string
	}{
		{"valid", http.MethodPost, "application/json", review(good), 200, true, ""},
		{"expired", http.MethodPost, "application/json", review(expired), 200, false, ReasonInvalid},
		{"garbage token", http.MethodPost, "application/json", review("%%%"), 200, false, ReasonMalformed},
		{"v1beta1 envelope", http.MethodPost, "application/json", strings.Replace(review(good), "authentication.k8s.io/v1", "authentication.k8s.io/v1beta1", 1), 200, true, ""},
		{"GET", http.MethodGet, "application/json", "", 405, false, ""},
		{"wrong content type", http.MethodPost, "text/plain", review(good), 415, false, ""},
		{"not JSON", http.MethodPost, "application/json", "{", 400, false, ""},
		{"wrong kind", http.MethodPost, "application/json", `{"apiVersion":"authentication.k8s.io/v1","kind":"SubjectAccessReview","spec":{"token":"x"}}`, 400, false, ""},
		{"unknown field", http.MethodPost, "application/json", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"x","tokn":"y"}}`, 400, false, ""},
		{"empty token", http.MethodPost, "application/json", review(""), 400, false, ""},
		{"trailing data", http.MethodPost, "application/json", review(good) + "{}", 400, false, ""},
		{"oversized body", http.MethodPost, "application/json", review(strings.Repeat("a", MaxTokenReviewBytes)), 413, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "/tokenreview", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.code {
				t.Fatalf("HTTP %d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			if tc.code != 200 {
				return
			}
			var tr authenticationv1.TokenReview
			if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil {
				t.Fatal(err)
			}
			if tr.Status.Authenticated != tc.authenticated || tr.Status.Error != tc.reason {
				t.Fatalf("status %+v", tr.Status)
			}
			if tr.Kind != "TokenReview" || !strings.HasPrefix(tr.APIVersion, "authentication.k8s.io/") {
				t.Fatalf("envelope %v", tr.TypeMeta)
			}
			if tc.authenticated && (tr.Status.User.Username != "platform:alice" || len(tr.Status.User.Extra[ExtraPermissions]) == 0) {
				t.Fatalf("user %+v", tr.Status.User)
			}
			// Nothing about the failed check (issuer, kid, audience, time) reaches the caller.
			for _, leak := range []string{"kid", "audience", "expired", "issuer", "signature"} {
				if strings.Contains(strings.ToLower(tr.Status.Error), leak) {
					t.Fatalf("reason %q leaks %q", tr.Status.Error, leak)
				}
			}
		})
	}
}

// FuzzDecodeTokenReview: the decoder never panics and anything it accepts has a token and a known envelope.
func FuzzDecodeTokenReview(f *testing.F) {
	f.Add([]byte(review("a.b.c")))
	f.Add([]byte(`{"apiVersion":"authentication.k8s.io/v1beta1","kind":"TokenReview","spec":{"token":"x","audiences":["a"]}}`))
	f.Add([]byte(`{"kind":"TokenReview"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"x"}}{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := DecodeTokenReview(b)
		if err != nil {
			return
		}
		if tr.Spec.Token == "" || tr.Kind != "TokenReview" {
			t.Fatalf("accepted %+v", tr)
		}
	})
}

// FuzzAuthenticate: token parsing and verification never panic and never accept what the fixture did not sign.
func FuzzAuthenticate(f *testing.F) {
	fx := newFixture(f)
	good := fx.key.sign(f, fx.claims())
	// Warm the key cache so the fuzz loop makes no network calls (unknown kids are rate-limited to none).
	if _, err := fx.auth.Authenticate(context.Background(), good); err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := fx.auth.Authenticate(context.Background(), tok)
		if err == nil && tok != good {
			// Only re-encodings of the same signed bytes could verify; base64url strictness rules those out.
			t.Fatalf("accepted a token the fixture did not sign: %q as %+v", tok, p)
		}
	})
}

// FuzzParseUnverified exercises the shape checks alone (cheap, so the fuzzer explores deeper).
func FuzzParseUnverified(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
	f.Add("eyJhbGciOiJSUzI1NiIsImNyaXQiOlsieCJdfQ.e30.c2ln")
	f.Add("e30.e30.e30")
	f.Fuzz(func(t *testing.T, tok string) {
		rt, err := parseUnverified(tok)
		if err != nil {
			return
		}
		if len(tok) > MaxTokenBytes || rt.alg == "" || rt.alg == "none" || strings.HasPrefix(rt.alg, "HS") {
			t.Fatalf("accepted %q with alg %q", tok, rt.alg)
		}
		_ = bytes.Count([]byte(tok), []byte("."))
	})
}
