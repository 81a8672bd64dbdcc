package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apeirora/apeiro-cmk/pkg/identity/identitytest"
)

// TestHydra proves token verification against a real OIDC provider: Hydra's discovery, JWKS and real tokens.
func TestHydra(t *testing.T) {
	h := identitytest.StartHydra(t)
	roles, _ := NewRoleMap(RoleConfig{})
	auth, err := New(Options{Platform: []IssuerConfig{{URL: h.Issuer, Audiences: []string{"cmk-api", "cmk-web"}}}, Roles: roles, Client: h.Client(),
		MinRefreshInterval: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	svc := h.ServiceToken(t, "e2e-svc", "cmk-api")
	p, err := auth.Authenticate(ctx, svc)
	if err != nil {
		t.Fatalf("Hydra client_credentials token: %v", err)
	}
	if p.Username != "platform:e2e-svc" || len(p.Groups) != 0 {
		t.Fatalf("service principal %+v", p)
	}

	idt := h.UserIDToken(t, "cmk-web", "alice", []string{"acme:Admin", "globex:Viewer"})
	p, err = auth.Authenticate(ctx, idt)
	if err != nil {
		t.Fatalf("Hydra ID token: %v", err)
	}
	if p.Username != "platform:alice" || strings.Join(p.Groups, ",") != "apeiro-cmk:tenant:acme:admin,apeiro-cmk:tenant:globex:viewer" {
		t.Fatalf("user principal %+v", p)
	}

	t.Run("rejections", func(t *testing.T) {
		other := h.ServiceToken(t, "other-svc", "someone-else")
		parts := strings.Split(idt, ".")
		forgedKey := newRSAKey(t, headerKid(t, idt))
		var claims map[string]any
		_ = json.Unmarshal(mustB64(t, parts[1]), &claims)
		expired := func() map[string]any {
			c := map[string]any{}
			for k, v := range claims {
				c[k] = v
			}
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			return c
		}()
		for name, tok := range map[string]string{
			"wrong audience (real Hydra token)":    other,
			"forged with Hydra's kid":              forgedKey.sign(t, claims),
			"expired claims, forged signature":     forgedKey.sign(t, expired),
			"unknown kid":                          newRSAKey(t, "not-hydras").sign(t, claims),
			"signature of another token":           parts[0] + "." + parts[1] + "." + strings.Split(svc, ".")[2],
			"HS256 with Hydra's claims":            handMade(`{"alg":"HS256","kid":"`+headerKid(t, idt)+`"}`, string(mustB64(t, parts[1])), []byte("k")),
			"payload swapped under real signature": parts[0] + "." + strings.Split(svc, ".")[1] + "." + parts[2],
		} {
			if p, err := auth.Authenticate(ctx, tok); err == nil {
				t.Errorf("%s: accepted as %s", name, p.Username)
			}
		}
	})

	t.Run("expired real token", func(t *testing.T) {
		// A real Hydra token judged one hour into the future.
		late, err := New(Options{Platform: []IssuerConfig{{URL: h.Issuer, Audiences: []string{"cmk-api"}}}, Roles: roles, Client: h.Client(),
			Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
		if err != nil {
			t.Fatal(err)
		}
		_, err = late.Authenticate(ctx, svc)
		if !errors.Is(err, ErrExpired) {
			t.Fatalf("expired Hydra token: %v, want ErrExpired", err)
		}
	})

	t.Run("unknown-kid flood is bounded", func(t *testing.T) {
		before := auth.JWKSFetches()[normalizeIssuer(h.Issuer)]
		attacker := newRSAKey(t, "x")
		for i := range 100 {
			attacker.kid = fmt.Sprintf("flood-%d", i)
			_, _ = auth.Authenticate(ctx, attacker.sign(t, claims(idt, t)))
		}
		if n := auth.JWKSFetches()[normalizeIssuer(h.Issuer)] - before; n > 1 {
			t.Fatalf("%d JWKS fetches from Hydra for 100 unknown kids within the interval, want at most 1", n)
		}
	})

	t.Run("IdP down: cached keys keep verifying", func(t *testing.T) {
		h.Stop(t)
		if _, err := auth.Authenticate(ctx, idt); err != nil {
			t.Fatalf("with Hydra stopped: %v", err)
		}
		time.Sleep(2100 * time.Millisecond) // past MinRefreshInterval: an unknown kid now tries (and fails) a refetch
		_, err := auth.Authenticate(ctx, newRSAKey(t, "new").sign(t, claims(idt, t)))
		var rj *Rejection
		if !errors.As(err, &rj) || rj.Reason != ReasonUnavailable {
			t.Fatalf("unknown kid with Hydra down: %v, want %q", err, ReasonUnavailable)
		}
		if _, err := auth.Authenticate(ctx, svc); err != nil {
			t.Fatalf("cached key after a failed refetch: %v", err)
		}
		// A fresh authenticator that never saw Hydra's keys says so clearly.
		fresh, _ := New(Options{Platform: []IssuerConfig{{URL: h.Issuer, Audiences: []string{"cmk-api"}}}, Roles: roles, Client: h.Client()})
		_, err = fresh.Authenticate(ctx, svc)
		if !errors.As(err, &rj) || rj.Reason != ReasonUnavailable {
			t.Fatalf("no cached keys and Hydra down: %v, want %q", err, ReasonUnavailable)
		}
	})
}

func mustB64(t testing.TB, s string) []byte {
	b, err := base64RawURL(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func headerKid(t testing.TB, tok string) string {
	var h struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(mustB64(t, strings.Split(tok, ".")[0]), &h)
	return h.Kid
}

func claims(tok string, t testing.TB) map[string]any {
	var c map[string]any
	_ = json.Unmarshal(mustB64(t, strings.Split(tok, ".")[1]), &c)
	return c
}
