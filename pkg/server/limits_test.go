package server_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/apeirora/apeiro-cmk/pkg/server"
)

// echo answers with what the handler saw of the body: through RequestBody (no copy) and through r.Body.
func echo(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		direct, ok := server.RequestBody(r)
		read, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		switch {
		case r.Body == http.NoBody:
			_, _ = io.WriteString(w, "no body")
		case !ok || !bytes.Equal(direct, read):
			t.Errorf("RequestBody %q (%v) differs from the body read %q", direct, ok, read)
		default:
			_, _ = w.Write(read)
		}
	})
}

func TestLimiter(t *testing.T) {
	h := server.NewLimiter(server.Limits{MaxBodyBytes: 1024}).Wrap(echo(t))
	long := strings.Repeat("a", 1000)
	cases := []struct {
		name    string
		method  string
		body    string
		chunked bool
		status  int
		answer  string
	}{
		{"body", http.MethodPost, long, false, 200, long},
		// The buffers are reused: a shorter body after a longer one must carry nothing of it.
		{"shorter body after a longer one", http.MethodPost, "short", false, 200, "short"},
		{"chunked body", http.MethodPost, "chunked", true, 200, "chunked"},
		{"empty body is NoBody", http.MethodPost, "", false, 200, "no body"},
		{"over the limit", http.MethodPost, strings.Repeat("x", 1025), false, 413, "limit is 1024 bytes"},
		{"chunked over the limit", http.MethodPost, strings.Repeat("x", 1025), true, 413, "limit is 1024 bytes"},
		{"GET", http.MethodGet, "", false, 405, "only POST"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
				if tc.chunked {
					body = io.MultiReader(body) // hides the length
				}
			}
			req := httptest.NewRequest(tc.method, "/x", body)
			if tc.chunked {
				req.ContentLength = -1
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.answer) {
				t.Fatalf("HTTP %d %q, want %d containing %q", rec.Code, rec.Body.String(), tc.status, tc.answer)
			}
		})
	}
}

// Defaults: the documented values, and an in-flight budget never below one maximal body.
func TestLimiterDefaults(t *testing.T) {
	got := server.NewLimiter(server.Limits{}).Limits()
	if got.MaxBodyBytes != server.DefaultMaxBodyBytes || got.RequestTimeout != server.DefaultRequestTimeout ||
		got.MaxInFlightBytes != server.DefaultMaxInFlight || got.InFlightWait != server.DefaultInFlightWait {
		t.Fatalf("defaults %+v", got)
	}
	if got := server.NewLimiter(server.Limits{MaxBodyBytes: 32 << 20, MaxInFlightBytes: 1 << 20}).Limits(); got.MaxInFlightBytes != 32<<20 {
		t.Fatalf("in-flight budget %d below one maximal body", got.MaxInFlightBytes)
	}
}

func BenchmarkLimiterParallel(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 4096)
	h := server.NewLimiter(server.Limits{}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, _ := server.RequestBody(r); len(b) != 4096 {
			panic("short body")
		}
	}))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/x", bytes.NewReader(body))
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
	})
}
