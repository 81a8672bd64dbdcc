package apeiro

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	idmv1 "github.com/openkcm/plugin-sdk/proto/plugin/identity_management/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func configured(t *testing.T, yaml string) (*Plugin, *clock) {
	t.Helper()
	c := &clock{t: time.Now()}
	p := New()
	p.now = c.now
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: yaml}); err != nil {
		t.Fatal(err)
	}
	return p, c
}

var acA = &idmv1.AuthContext{Data: map[string]string{"app_tid": "tenant-a"}}

func code(err error) codes.Code { return status.Code(err) }

func TestCacheFiveMinutes(t *testing.T) {
	kc := newFakeKeycloak(t)
	p, c := configured(t, kc.yaml(""))
	for range 5 {
		if _, err := p.GetUser(context.Background(), &idmv1.GetUserRequest{UserId: aliceID, AuthContext: acA}); err != nil {
			t.Fatal(err)
		}
	}
	if n := kc.calls.Load(); n != 1 {
		t.Fatalf("%d directory calls for 5 lookups within the TTL, want 1", n)
	}
	if n := kc.tokens.Load(); n != 1 {
		t.Fatalf("%d token requests, want 1 (the token is reused until it expires)", n)
	}
	c.add(DefaultCacheTTL + time.Second)
	if _, err := p.GetUser(context.Background(), &idmv1.GetUserRequest{UserId: aliceID, AuthContext: acA}); err != nil {
		t.Fatal(err)
	}
	if n := kc.calls.Load(); n != 2 {
		t.Fatalf("%d directory calls after the TTL, want 2", n)
	}
	// NotFound is cached briefly, then asked again.
	for range 3 {
		_, err := p.GetUser(context.Background(), &idmv1.GetUserRequest{UserId: "nobody", AuthContext: acA})
		if code(err) != codes.NotFound {
			t.Fatalf("missing user: %v", err)
		}
	}
	if n := kc.calls.Load(); n != 3 {
		t.Fatalf("%d calls, want 3 (NotFound cached)", n)
	}
}

func TestPerCallTimeout(t *testing.T) {
	kc := newFakeKeycloak(t)
	p, _ := configured(t, kc.yaml("")+"") // token first, then slow down the admin API
	if _, err := p.GetAllGroups(context.Background(), &idmv1.GetAllGroupsRequest{AuthContext: acA}); err != nil {
		t.Fatal(err)
	}
	p2, _ := configured(t, strings.Replace(kc.yaml(""), "  allowLoopback: true\n", "  allowLoopback: true\n  callTimeout: 200ms\n", 1))
	kc.mu.Lock()
	kc.delay = 2 * time.Second
	kc.mu.Unlock()
	start := time.Now()
	_, err := p2.GetUser(context.Background(), &idmv1.GetUserRequest{UserId: aliceID, AuthContext: acA})
	if c := code(err); c != codes.DeadlineExceeded && c != codes.Unavailable {
		t.Fatalf("slow directory: %v, want DeadlineExceeded or Unavailable", err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("a 200ms call timeout took %s", d)
	}
}

func TestErrorsMapToStatus(t *testing.T) {
	kc := newFakeKeycloak(t)
	p, _ := configured(t, kc.yaml(""))
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"missing tenant", func() error {
			_, err := p.GetUser(ctx, &idmv1.GetUserRequest{UserId: aliceID})
			return err
		}, codes.InvalidArgument},
		{"invalid tenant", func() error {
			_, err := p.GetUser(ctx, &idmv1.GetUserRequest{UserId: aliceID, AuthContext: &idmv1.AuthContext{Data: map[string]string{"app_tid": "../master"}}})
			return err
		}, codes.InvalidArgument},
		{"unknown realm user", func() error {
			_, err := p.GetUser(ctx, &idmv1.GetUserRequest{UserId: aliceID, AuthContext: &idmv1.AuthContext{Data: map[string]string{"app_tid": "tenant-z"}}})
			return err
		}, codes.NotFound},
		{"group that is not a role", func() error {
			_, err := p.GetGroup(ctx, &idmv1.GetGroupRequest{GroupName: "workspaces", AuthContext: acA})
			return err
		}, codes.NotFound},
		{"members of a missing group", func() error {
			_, err := p.GetUsersForGroup(ctx, &idmv1.GetUsersForGroupRequest{GroupId: "nope", AuthContext: acA})
			return err
		}, codes.NotFound},
		{"groups of a missing user", func() error {
			_, err := p.GetGroupsForUser(ctx, &idmv1.GetGroupsForUserRequest{UserId: "nope", AuthContext: acA})
			return err
		}, codes.NotFound},
	} {
		if err := tc.call(); code(err) != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
		}
	}
	// Role names match case-insensitively and come back in their configured spelling.
	g, err := p.GetGroup(ctx, &idmv1.GetGroupRequest{GroupName: "viewer", AuthContext: acA})
	if err != nil || g.GetGroup().GetName() != "Viewer" || g.GetGroup().GetId() != viewerGroupID {
		t.Fatalf("GetGroup(viewer) = %v, %v", g, err)
	}
	// The nested role group /workspaces/Member is found.
	if m, err := p.GetUsersForGroup(ctx, &idmv1.GetUsersForGroupRequest{GroupId: memberGroupID, AuthContext: acA}); err != nil || len(m.GetUsers()) != 1 || m.GetUsers()[0].GetName() != "carol" {
		t.Fatalf("members of Member: %v, %v", m, err)
	}
}

func TestWrongCredentialsAndDirectoryDown(t *testing.T) {
	kc := newFakeKeycloak(t)
	p, _ := configured(t, strings.Replace(kc.yaml(""), "value: s3cret", "value: wrong", 1))
	_, err := p.GetUser(context.Background(), &idmv1.GetUserRequest{UserId: aliceID, AuthContext: acA})
	if code(err) != codes.FailedPrecondition || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("refused credentials: %v, want FailedPrecondition without the secret", err)
	}
	url := kc.srv.URL
	kc.srv.Close()
	p2, _ := configured(t, strings.Replace(kc.yaml(""), kc.srv.URL, url, 1))
	_, err = p2.GetAllGroups(context.Background(), &idmv1.GetAllGroupsRequest{AuthContext: acA})
	if code(err) != codes.Unavailable {
		t.Fatalf("directory down: %v, want Unavailable", err)
	}
}

func TestPaging(t *testing.T) {
	kc := newFakeKeycloak(t)
	a := kc.realms["tenant-a"]
	for i := range 250 {
		id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		a.users[id] = map[string]any{"id": id, "username": fmt.Sprintf("u%d", i), "enabled": true}
		a.members[viewerGroupID] = append(a.members[viewerGroupID], id)
	}
	p, _ := configured(t, kc.yaml(""))
	m, err := p.GetUsersForGroup(context.Background(), &idmv1.GetUsersForGroupRequest{GroupId: viewerGroupID, AuthContext: acA})
	if err != nil || len(m.GetUsers()) != 251 {
		t.Fatalf("paged members: %d, %v; want 251", len(m.GetUsers()), err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"directory: {url: http://kc.example, clientID: x, clientSecret: {source: embedded, value: s}}\ntenantKey: t", "https base URL"},
		{"directory: {url: https://kc.example, clientSecret: {source: embedded, value: s}}\ntenantKey: t", "clientID is required"},
		{"directory: {url: https://kc.example, clientID: x}\ntenantKey: t", "clientSecret is required"},
		{"directory: {url: https://kc.example, clientID: x, clientSecret: {source: embedded, value: s}}", "tenantKey is not set"},
		{"roles: {Viewer: [keys.destroy]}", "unknown permission"},
		{"cacheTTL: forever", "cacheTTL"},
		{"bogus: 1", "unknown field"},
	} {
		_, err := parseConfig(tc.yaml)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
	// No directory: a valid, empty configuration (the profile loads without any IdP).
	p, _ := configured(t, "roles: {Viewer: [keys.read]}")
	if _, err := p.GetUser(context.Background(), &idmv1.GetUserRequest{UserId: "x"}); code(err) != codes.NotFound {
		t.Fatalf("empty directory: %v", err)
	}
}

// FuzzParseConfig feeds hostile plugin YAML to the configuration parser: it must never panic, and whatever it
// accepts must hold the invariants the plugin relies on (an https directory with a client, bounded durations, realm
// names that stay one path segment for every valid tenant).
func FuzzParseConfig(f *testing.F) {
	f.Add("directory: {url: https://kc.example, clientID: x, clientSecret: {source: embedded, value: s}, realm: r}")
	f.Add("tenantKey: t\ndirectory: {url: https://kc.example/base/, clientID: x, clientSecret: {source: embedded, value: s}, callTimeout: 2s}\ncacheTTL: 1m")
	f.Add("roles: {Viewer: [keys.read]}\nallGroups: true")
	f.Add("directory: {url: 'https://kc.example', realm: 'a/{tenant}', clientID: x, clientSecret: {source: embedded, value: s}}\ntenantKey: t")
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := parseConfig(raw)
		if err != nil {
			return
		}
		if s.cacheTTL < 0 || s.cacheTTL > time.Hour || s.roles == nil {
			t.Fatalf("accepted %q with cacheTTL %v, roles %v", raw, s.cacheTTL, s.roles)
		}
		if s.base == nil {
			return // no directory: the empty, valid configuration
		}
		if s.base.Scheme != "https" || s.base.Host == "" || s.clientID == "" || s.callTimeout <= 0 || s.callTimeout > time.Minute {
			t.Fatalf("accepted %q: base %v, clientID %q, callTimeout %v", raw, s.base, s.clientID, s.callTimeout)
		}
		realm, err := s.realmFor("acme")
		if err != nil || realm == "" || strings.ContainsAny(realm, "/?#%") {
			t.Fatalf("accepted %q: realm for acme is %q (%v)", raw, realm, err)
		}
	})
}
