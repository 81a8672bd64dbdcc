package apeiro

import (
	"encoding/json"
	"encoding/pem"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeKeycloak answers the Keycloak Admin REST calls the plugin makes, in the response shapes recorded in
// testdata/keycloak (Keycloak cannot run on the test machines). It checks the client-credentials flow (token
// endpoint with HTTP Basic client authentication, Bearer token on every admin call) and pages with first/max.
type fakeKeycloak struct {
	srv    *httptest.Server
	caFile string

	mu     sync.Mutex
	realms map[string]*fakeRealm
	delay  time.Duration
	calls  atomic.Int64 // admin API calls
	tokens atomic.Int64 // token requests
	secret string
}

type fakeRealm struct {
	users    map[string]map[string]any // id → UserRepresentation
	order    []string
	groups   []map[string]any            // top-level GroupRepresentations
	children map[string][]map[string]any // parent ID → subgroups (GET /groups/{id}/children)
	members  map[string][]string
}

func loadJSON(t testing.TB, name string, v any) {
	b, err := os.ReadFile(filepath.Join("testdata", "keycloak", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func newFakeKeycloak(t testing.TB) *fakeKeycloak {
	f := &fakeKeycloak{realms: map[string]*fakeRealm{}, secret: "s3cret"}
	var userTmpl map[string]any
	loadJSON(t, "user.json", &userTmpl)
	var groups []map[string]any
	loadJSON(t, "groups.json", &groups)
	var children []map[string]any
	loadJSON(t, "group-children.json", &children)
	var errs map[string]map[string]string
	loadJSON(t, "errors.json", &errs)
	var token map[string]any
	loadJSON(t, "token.json", &token)

	mkUser := func(id, username, first, last, email string) map[string]any {
		u := maps.Clone(userTmpl)
		u["id"], u["username"], u["firstName"], u["lastName"], u["email"] = id, username, first, last, email
		return u
	}
	// tenant-a: the recorded realm (Admin, Viewer, /workspaces/Member and the non-role parent group "workspaces").
	a := &fakeRealm{users: map[string]map[string]any{}, groups: groups, members: map[string][]string{},
		children: map[string][]map[string]any{"2d9f8b5a-4c33-4c7f-8b2a-5e1e3f4a6b03": children}}
	for _, u := range []map[string]any{
		mkUser(aliceID, "alice", "Alice", "Liddell", "alice@acme.example"),
		mkUser(bobID, "bob", "Bob", "", "bob@acme.example"),
		mkUser(carolID, "carol", "", "", ""),
	} {
		a.users[u["id"].(string)] = u
		a.order = append(a.order, u["id"].(string))
	}
	a.members[adminGroupID] = []string{aliceID, bobID}
	a.members[viewerGroupID] = []string{aliceID}
	a.members[memberGroupID] = []string{carolID}
	f.realms["tenant-a"] = a
	// tenant-b: another realm with an Admin group of its own.
	b := &fakeRealm{users: map[string]map[string]any{malloryID: mkUser(malloryID, "mallory", "Mallory", "", "")}, order: []string{malloryID},
		groups:  []map[string]any{{"id": "9f9f9f9f-0000-4000-8000-00000000b001", "name": "Admin", "path": "/Admin", "subGroupCount": 0, "subGroups": []any{}}},
		members: map[string][]string{"9f9f9f9f-0000-4000-8000-00000000b001": {malloryID}}}
	f.realms["tenant-b"] = b

	notFound := func(w http.ResponseWriter, kind string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(errs[kind])
	}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		delay := f.delay
		f.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if r.URL.Path == "/realms/master/protocol/openid-connect/token" {
			f.tokens.Add(1)
			id, sec, ok := r.BasicAuth()
			if r.Method != http.MethodPost || !ok || id != "cmk-directory" || sec != f.secret || r.FormValue("grant_type") != "client_credentials" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_ = json.NewEncoder(w).Encode(errs["tokenRefused"])
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(token)
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, "/admin/realms/")
		if !ok || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+token["access_token"].(string) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		f.calls.Add(1)
		segs := strings.Split(rest, "/")
		f.mu.Lock()
		realm, ok := f.realms[segs[0]]
		f.mu.Unlock()
		if !ok {
			notFound(w, "realmNotFound")
			return
		}
		first, _ := strconv.Atoi(r.URL.Query().Get("first"))
		maxN, err := strconv.Atoi(r.URL.Query().Get("max"))
		if err != nil {
			maxN = 100
		}
		page := func(items []any) []any {
			if first >= len(items) {
				return []any{}
			}
			return items[first:min(len(items), first+maxN)]
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case len(segs) == 3 && segs[1] == "users":
			u, ok := realm.users[segs[2]]
			if !ok {
				notFound(w, "userNotFound")
				return
			}
			_ = json.NewEncoder(w).Encode(u)
		case len(segs) == 2 && segs[1] == "groups":
			items := make([]any, 0, len(realm.groups))
			for _, g := range realm.groups {
				items = append(items, g)
			}
			_ = json.NewEncoder(w).Encode(page(items))
		case len(segs) == 4 && segs[1] == "groups" && segs[3] == "children":
			if realm.findGroup(segs[2]) == nil {
				notFound(w, "groupNotFound")
				return
			}
			var items []any
			for _, g := range realm.children[segs[2]] {
				items = append(items, g)
			}
			_ = json.NewEncoder(w).Encode(page(items))
		case len(segs) == 4 && segs[1] == "groups" && segs[3] == "members":
			if realm.findGroup(segs[2]) == nil {
				notFound(w, "groupNotFound")
				return
			}
			var items []any
			for _, id := range realm.members[segs[2]] {
				items = append(items, realm.users[id])
			}
			_ = json.NewEncoder(w).Encode(page(items))
		case len(segs) == 4 && segs[1] == "users" && segs[3] == "groups":
			if _, ok := realm.users[segs[2]]; !ok {
				notFound(w, "userNotFound")
				return
			}
			var items []any
			for gid, ms := range realm.members {
				for _, m := range ms {
					if m == segs[2] {
						g := realm.findGroup(gid)
						items = append(items, map[string]any{"id": g["id"], "name": g["name"], "path": g["path"], "subGroupCount": 0, "subGroups": []any{}})
					}
				}
			}
			_ = json.NewEncoder(w).Encode(page(items))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	f.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(f.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (r *fakeRealm) findGroup(id string) map[string]any {
	for _, g := range r.groups {
		if g["id"] == id {
			return g
		}
	}
	for _, gs := range r.children {
		for _, g := range gs {
			if g["id"] == id {
				return g
			}
		}
	}
	return nil
}

// IDs from the recorded shapes.
const (
	aliceID       = "6f4e2f0a-7b9c-4c1e-9a57-0d2b7e1a9c11"
	bobID         = "7a5f3a1b-8cad-4d2f-8b68-1e3c8f2bad22"
	carolID       = "8b6a4b2c-9dbe-4e3a-9c79-2f4d9a3cbe33"
	malloryID     = "9c7b5c3d-aecf-4f4b-8d8a-3a5eab4dcf44"
	adminGroupID  = "0b7d6f3e-2a11-4a5d-8f0e-3c9c1d2e4f01"
	viewerGroupID = "1c8e7a4f-3b22-4b6e-9a1f-4d0d2e3f5a02"
	memberGroupID = "3e0a9c6b-5d44-4d8a-9c3b-6f2f4a5b7c04"
)

func (f *fakeKeycloak) yaml(extra string) string {
	return "tenantKey: app_tid\ndirectory:\n  url: " + f.srv.URL + "\n  clientID: cmk-directory\n  clientSecret: {source: embedded, value: " + f.secret +
		"}\n  caFile: " + f.caFile + "\n  allowLoopback: true\n" + extra
}
