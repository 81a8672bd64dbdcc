package amclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func TestNewValidatesURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "http://", "http://u:p@x:9093", "http://x/?q=1", "x:9093"} {
		if _, err := New(Options{URL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	c, err := New(Options{URL: "http://am.monitoring:9093/prefix/"})
	if err != nil || c.URL() != "http://am.monitoring:9093/prefix" {
		t.Fatalf("%v %v", c, err)
	}
}

func TestPostAndErrors(t *testing.T) {
	var path string
	code := 200
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			return
		}
		w.WriteHeader(code)
		w.Write([]byte(strings.Repeat("e", 1<<20)))
	}))
	defer srv.Close()
	tok := t.TempDir() + "/token"
	if err := writeFile(tok, "tok\n"); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{URL: srv.URL + "/am", BearerTokenFile: tok, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.PostAlerts(ctx, []Alert{{Labels: map[string]string{"alertname": "x"}}}); err != nil || path != "/am/api/v2/alerts" {
		t.Fatalf("post: %v, path %q", err, path)
	}
	for _, tc := range []struct {
		code  int
		retry bool
	}{{400, false}, {429, true}, {500, true}, {503, true}} {
		code = tc.code
		err := c.PostAlerts(ctx, nil)
		var se *StatusError
		if !errors.As(err, &se) || se.Code != tc.code || len(se.Body) > maxErrorBody || Retryable(err) != tc.retry {
			t.Errorf("%d: %v retryable=%v", tc.code, err, Retryable(err))
		}
	}
	dead, _ := New(Options{URL: "http://127.0.0.1:1", Timeout: time.Second})
	if err := dead.PostAlerts(ctx, nil); err == nil || !Retryable(err) {
		t.Errorf("unreachable: %v", err)
	}
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }
