package openbao

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	sid := filepath.Join(dir, "sid")
	_ = os.WriteFile(sid, []byte("s"), 0o600)
	cases := []struct {
		name, yaml, wantErr string
	}{
		{"empty", "", ""},
		{"approle", "address: https://bao:8200\nauth: {method: approle, roleId: r, secretIdFile: " + sid + "}", ""},
		{"kubernetes default token file", "auth: {method: kubernetes, role: apeiro-cmk}", ""},
		{"cert", "auth: {method: cert, certFile: /c, keyFile: /k}", ""},
		{"cmk injected regions", "supportedregions: {source: embedded, value: '{\"regions\":[{\"name\":\"a\",\"technicalName\":\"a\"}]}'}", ""},
		{"unknown key is a warning", "somethingNew: 1", ""},
		{"token refused", "token: s.abcdef", "token in the configuration is refused"},
		{"root token refused", "rootToken: x", "token in the configuration is refused"},
		{"bad address", "address: ftp://x", "address"},
		{"address with credentials", "address: https://u:p@bao:8200", "address"},
		{"bad mount", "mountPrefix: ../sys", "mountPrefix"},
		{"approle without secret", "auth: {method: approle, roleId: r}", "secretIdFile"},
		{"approle both role ids", "auth: {method: approle, roleId: r, roleIdFile: /f, secretIdFile: /s}", "exactly one"},
		{"kubernetes without role", "auth: {method: kubernetes}", "auth.role"},
		{"cert without key", "auth: {method: cert, certFile: /c}", "keyFile"},
		{"unknown method", "auth: {method: userpass}", "not kubernetes"},
		{"no method", "auth: {role: x}", "auth.method is required"},
		{"bad duration", "callTimeout: forever", "callTimeout"},
		{"negative window", "defaultDeletionWindowDays: -1", "defaultDeletionWindowDays"},
		{"not yaml", "{{{ [", "invalid openbao keystore configuration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(tc.yaml)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseConfig: %v", err)
				}
				if c.MountPrefix == "" || c.Region == "" || c.budget == 0 {
					t.Fatalf("defaults not applied: %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"", "address: http://127.0.0.1:8200", "auth: {method: approle, roleId: r, secretIdFile: /x}", "token: x", "mountPrefix: a/b/c", "{"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConfig(s)
		if err != nil {
			return
		}
		if !mountRE.MatchString(c.MountPrefix) || c.budget <= 0 || c.callTimeout <= 0 {
			t.Fatalf("accepted an invalid configuration: %+v", c)
		}
	})
}

func FuzzVersionOf(f *testing.F) {
	for _, s := range []string{"vault:v1:abc", "vault:v:x", "vault:v12:", "x:v1:y", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := versionOf(s)
		if ok && (!strings.HasPrefix(s, "vault:"+v+":") || len(v) < 2) {
			t.Fatalf("versionOf(%q) = %q", s, v)
		}
	})
}

func TestBind(t *testing.T) {
	cfg, _ := ParseConfig("")
	b := newBackend(cfg)
	mk := func(m map[string]any) *structpb.Struct { s, _ := structpb.NewStruct(m); return s }
	cases := []struct {
		name string
		in   map[string]any
		want string
		code codes.Code
	}{
		{"tenant", map[string]any{"tenant": "acme"}, "transit/acme", codes.OK},
		{"own mount", map[string]any{"tenant": "acme", "mount": "/transit/acme/"}, "transit/acme", codes.OK},
		{"other mount", map[string]any{"tenant": "acme", "mount": "transit/globex"}, "", codes.InvalidArgument},
		{"no tenant", map[string]any{}, "", codes.InvalidArgument},
		{"path in tenant", map[string]any{"tenant": "acme/../globex"}, "", codes.InvalidArgument},
		{"upper case tenant", map[string]any{"tenant": "ACME"}, "", codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bd, err := b.bind(mk(tc.in))
			if c := status.Code(grpcErr(err)); c != tc.code {
				t.Fatalf("code = %s (%v), want %s", c, err, tc.code)
			}
			if err == nil && bd.mount != tc.want {
				t.Fatalf("mount = %s, want %s", bd.mount, tc.want)
			}
		})
	}
}

// fakeBao is a minimal OpenBao stand-in for failure modes the real server cannot be made to show on demand
// (a hanging server, a 503 mid-call). Real behaviour is proven against the Vault peer (peer_test.go).
func fakeBao(t *testing.T, h http.HandlerFunc) (string, *atomic.Int64) {
	t.Helper()
	var logins atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/login") {
			logins.Add(1)
			_ = json.NewEncoder(w).Encode(map[string]any{"auth": map[string]any{"client_token": "t1", "lease_duration": 3600, "renewable": true}})
			return
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &logins
}

func fakeConfig(t *testing.T, addr string) *Config {
	t.Helper()
	sid := filepath.Join(t.TempDir(), "sid")
	_ = os.WriteFile(sid, []byte("secret"), 0o600)
	c, err := ParseConfig("address: " + addr + "\ncallTimeout: 2s\nauth: {method: approle, roleId: r, secretIdFile: " + sid + "}")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHangingServerHonoursDeadline(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() }) // accept, never answer
		}
	}()
	w := NewWrapper(fakeConfig(t, "http://"+l.Addr().String()))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = w.Wrap(ctx, tenantStruct("acme"), "k", []byte("x"), nil)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Wrap returned after %s, past the caller's 300 ms deadline", d)
	}
	if !errors.Is(err, keychain.ErrUnavailable) || status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("err = %v (%s), want DeadlineExceeded + ErrUnavailable", err, status.Code(err))
	}
}

func tenantStruct(t string) *structpb.Struct {
	s, _ := structpb.NewStruct(map[string]any{"tenant": t})
	return s
}

func TestSealedMidOperation(t *testing.T) {
	addr, _ := fakeBao(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/sys/health":
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"initialized": true, "sealed": true})
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{"Vault is sealed"}})
		}
	})
	w := NewWrapper(fakeConfig(t, addr))
	_, err := w.Wrap(context.Background(), tenantStruct("acme"), "k", []byte("x"), nil)
	if !errors.Is(err, ErrSealed) || status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "sealed") {
		t.Fatalf("err = %v, want Unavailable sealed", err)
	}
}

func TestExpiredTokenMidCallIsReplaced(t *testing.T) {
	var calls atomic.Int64
	addr, logins := fakeBao(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/sys/mounts/transit/acme" && calls.Add(1) == 1 {
			w.WriteHeader(http.StatusForbidden) // the token expired between check and call
			_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{"permission denied"}})
			return
		}
		if r.URL.Path == "/v1/sys/mounts/transit/acme" {
			_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"type": "transit", "description": `{"apeiro":"apeiro-cmk keystore","tenant":"acme"}`}})
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{}})
	})
	w := NewWrapper(fakeConfig(t, addr))
	_, err := w.Wrap(context.Background(), tenantStruct("acme"), "k", []byte("x"), nil)
	if !errors.Is(err, keychain.ErrKeyNotFound) {
		t.Fatalf("err = %v, want key not found after a transparent re-login", err)
	}
	if logins.Load() != 2 {
		t.Fatalf("logins = %d, want 2 (initial + after 403)", logins.Load())
	}
}

func TestNoAddressNoAuth(t *testing.T) {
	t.Setenv("BAO_ADDR", "")
	t.Setenv("VAULT_ADDR", "")
	w := NewWrapper(nil)
	_, err := w.Wrap(context.Background(), tenantStruct("acme"), "k", []byte("x"), nil)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "address") {
		t.Fatalf("err = %v", err)
	}
}

// TestWaitingForAHangingLoginHonoursDeadline: a caller queued behind another caller's login (to a server that does
// not answer) returns at its own deadline.
func TestWaitingForAHangingLoginHonoursDeadline(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	w := NewWrapper(fakeConfig(t, srv.URL))
	first, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _, _ = w.Wrap(first, tenantStruct("acme"), "k", []byte("x"), nil) }()
	time.Sleep(100 * time.Millisecond) // the first caller holds the login
	ctx, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	start := time.Now()
	_, err := w.Wrap(ctx, tenantStruct("acme"), "k", []byte("x"), nil)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("second caller returned after %s, past its 300 ms deadline", d)
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
}

// TestUninitialisedServer: 501 from sys/health and the API names the state.
func TestUninitialisedServer(t *testing.T) {
	addr, _ := fakeBao(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotImplemented)
		if r.URL.Path == "/v1/sys/health" {
			_ = json.NewEncoder(w).Encode(map[string]any{"initialized": false, "sealed": true})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{"Vault is not initialized"}})
	})
	w := NewWrapper(fakeConfig(t, addr))
	_, err := w.Wrap(context.Background(), tenantStruct("acme"), "k", []byte("x"), nil)
	if !errors.Is(err, ErrUninitialized) || status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable not initialised", err)
	}
	if err := w.Health(context.Background()); !errors.Is(err, ErrUninitialized) {
		t.Fatalf("Health = %v", err)
	}
}

func TestSessionPerAccountRole(t *testing.T) {
	cfg, err := ParseConfig("auth: {method: kubernetes, role: apeiro-cmk}")
	if err != nil {
		t.Fatal(err)
	}
	b := newBackend(cfg)
	bind := func(role string) *binding {
		bd, err := b.bind(structOf(map[string]any{"tenant": "acme", "openBaoRole": role}))
		if err != nil {
			t.Fatal(err)
		}
		return bd
	}
	if b.sessionFor(bind("")) != b.sess || b.sessionFor(bind("apeiro-cmk")) != b.sess {
		t.Fatal("no role / the platform role must use the platform session")
	}
	s1, s2 := b.sessionFor(bind("tenant-acme")), b.sessionFor(bind("tenant-acme"))
	if s1 == b.sess || s1 != s2 || s1.cfg.Auth.Role != "tenant-acme" || cfg.Auth.Role != "apeiro-cmk" {
		t.Fatal("an Account role must get its own, reused session without changing the platform configuration")
	}
	if _, err := b.bind(structOf(map[string]any{"tenant": "acme", "openBaoRole": "../x"})); status.Code(grpcErr(err)) != codes.InvalidArgument {
		t.Fatalf("hostile role: %v", err)
	}
	// AppRole has no per-Account role: always the platform session.
	cfg2, _ := ParseConfig("auth: {method: approle, roleId: r, secretIdFile: /s}")
	b2 := newBackend(cfg2)
	if bd, _ := b2.bind(structOf(map[string]any{"tenant": "acme", "openBaoRole": "x"})); b2.sessionFor(bd) != b2.sess {
		t.Fatal("approle must use the platform session")
	}
}
