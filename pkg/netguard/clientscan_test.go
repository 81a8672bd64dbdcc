package netguard

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// clientAllowlist names the only non-test files under pkg/ and cmd/ that may build an HTTP client or transport
// themselves, each with the reason. Everything that calls a URL a tenant or an operator's configuration supplies
// must take its client from NewClient, so the address rules cannot be forgotten in one place.
var clientAllowlist = map[string]string{
	"pkg/netguard/client.go": "NewClient itself: the one place that assembles the guarded transport",
	"pkg/alerts/amclient/client.go": "Alertmanager is named by the operator (flag or plugin YAML), never by a tenant, " +
		"and is an in-cluster service by design, so the public-address rule cannot apply; tenant webhooks go through NewClient",
	"pkg/identity/identitytest/hydra.go": "test helper only (imported by tests): drives the local Hydra peer on loopback " +
		"through its login and consent flow, which needs a cookie jar and no redirect following",
}

// TestNoHandBuiltHTTPClients fails when a package under pkg/ or cmd/ constructs an http.Client or
// http.Transport, or uses the default client or transport (http.Get, http.DefaultClient, ...), outside the
// allowlist above.
func TestNoHandBuiltHTTPClients(t *testing.T) {
	root := moduleRoot(t)
	var found []string
	for _, dir := range []string{"pkg", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if n := d.Name(); n == "testdata" || strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			rel, _ := filepath.Rel(root, path)
			rel = filepath.ToSlash(rel)
			if _, ok := clientAllowlist[rel]; ok {
				return nil
			}
			for _, f := range scanHTTPClients(t, path) {
				found = append(found, rel+":"+f)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(found)
	for _, f := range found {
		t.Errorf("%s: build outbound HTTP clients with netguard.NewClient (or justify an entry in clientAllowlist)", f)
	}
}

func TestScanHTTPClientsFindsHandBuiltClients(t *testing.T) {
	src := `package x
import (
	h "net/http"
)
var a = &h.Client{}
var b = h.Transport{}
var c = new(h.Client)
var d = h.DefaultClient
func e() { h.Get("https://x.example.com") }
var f = h.DefaultTransport
var ok = h.Header{}
`
	p := filepath.Join(t.TempDir(), "x.go")
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := scanHTTPClients(t, p); len(got) != 6 {
		t.Fatalf("found %d of 6 constructions: %v", len(got), got)
	}
}

// scanHTTPClients returns "line: what" for each construction of an HTTP client or transport in one file.
func scanHTTPClients(t *testing.T, path string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	httpName := ""
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == "net/http" {
			httpName = "http"
			if imp.Name != nil {
				httpName = imp.Name.Name
			}
		}
	}
	if httpName == "" || httpName == "_" {
		return nil
	}
	isHTTP := func(e ast.Expr, names ...string) bool {
		sel, ok := e.(*ast.SelectorExpr)
		if !ok {
			return false
		}
		id, ok := sel.X.(*ast.Ident)
		if !ok || id.Name != httpName {
			return false
		}
		for _, n := range names {
			if sel.Sel.Name == n {
				return true
			}
		}
		return false
	}
	var out []string
	add := func(n ast.Node, what string) {
		out = append(out, strconv.Itoa(fset.Position(n.Pos()).Line)+": "+what)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.CompositeLit:
			if isHTTP(x.Type, "Client", "Transport") {
				add(x, "composite literal of http.Client/Transport")
			}
		case *ast.CallExpr:
			if id, ok := x.Fun.(*ast.Ident); ok && id.Name == "new" && len(x.Args) == 1 && isHTTP(x.Args[0], "Client", "Transport") {
				add(x, "new(http.Client/Transport)")
			}
			if isHTTP(x.Fun, "Get", "Post", "PostForm", "Head") {
				add(x, "package-level http request function (default client)")
			}
		case *ast.SelectorExpr:
			if isHTTP(x, "DefaultClient", "DefaultTransport") {
				add(x, "http.DefaultClient/DefaultTransport")
			}
		}
		return true
	})
	return out
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}
