package server_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"testing"

	"github.com/apeirora/apeiro-cmk/pkg/server"
)

// TestDraining: once Options.Draining reports true, readiness fails at once while requests are still served, each
// response carries "Connection: close" and the connection it came on is closed after it, so a client's next request
// goes out on a new connection (through a Service: to another replica). Before, connections are kept alive.
func TestDraining(t *testing.T) {
	var draining atomic.Bool
	r := start(t, server.Options{Draining: draining.Load}, func(s *server.Server) { s.Register("/ok", okHandler()) })
	var dials atomic.Int64
	tr := &http.Transport{
		TLSClientConfig: r.tlsConfig(),
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	// get sends one request and reports whether it went out on a kept-alive connection, and whether the answer
	// said "Connection: close" (the client transport takes the header out and sets Response.Close).
	get := func() (reused, closed bool) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "https://"+r.addr+"/ok", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK || string(b) != "ok" {
			t.Fatalf("HTTP %d %q, want 200 ok", resp.StatusCode, b)
		}
		return reused, resp.Close
	}

	steps := []struct {
		name       string
		draining   bool
		wantReused bool
		wantClose  bool
		wantReady  bool
	}{
		{"first request opens a connection", false, false, false, true},
		{"serving: the connection is kept alive", false, true, false, true},
		// Draining begins: the kept-alive connection carries one more request and is closed after it.
		{"draining: last request on the old connection", true, true, true, false},
		{"draining: served on a new connection, closed again", true, false, true, false},
		{"draining: never kept alive", true, false, true, false},
	}
	for _, st := range steps {
		draining.Store(st.draining)
		reused, closed := get()
		if reused != st.wantReused || closed != st.wantClose {
			t.Errorf("%s: reused %v, Connection: close %v; want %v, %v", st.name, reused, closed, st.wantReused, st.wantClose)
		}
		if err := r.srv.StartedChecker()(nil); (err == nil) != st.wantReady {
			t.Errorf("%s: readiness %v, want ready=%v", st.name, err, st.wantReady)
		}
	}
	if n := dials.Load(); n != 3 {
		t.Errorf("%d connections opened, want 3 (one before draining, one per request while draining)", n)
	}
	// A draining server still accepts TLS connections: it is out of rotation, not closed.
	if _, err := r.handshake(&tls.Config{RootCAs: r.pki.pool, ServerName: "127.0.0.1"}); err != nil {
		t.Errorf("a draining server refused a connection: %v", err)
	}
}
