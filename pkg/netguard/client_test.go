package netguard

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// fakeResolver answers every name with fixed addresses, standing in for a DNS server that rebinds.
type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func tlsServer(t *testing.T, h http.Handler) (*httptest.Server, *tls.Config) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	return srv, &tls.Config{RootCAs: pool}
}

func TestClientRefusesLoopbackUnlessAllowed(t *testing.T) {
	srv, tc := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	if _, err := NewClient(ClientOptions{TLSConfig: tc}).Get(srv.URL); err == nil {
		t.Fatal("loopback receiver reached without AllowLoopback")
	}
	resp, err := NewClient(ClientOptions{TLSConfig: tc, AllowLoopback: true}).Get(srv.URL)
	if err != nil {
		t.Fatalf("AllowLoopback: %v", err)
	}
	resp.Body.Close()
}

func TestClientDNSRebinding(t *testing.T) {
	srv, tc := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	for name, addrs := range map[string][]string{
		"rebind.example.com.":  {"127.0.0.1"},
		"mixed.example.com.":   {"93.184.216.34", "127.0.0.1"},
		"meta.example.com.":    {"169.254.169.254"},
		"nat64.example.com.":   {"64:ff9b::7f00:1"},
		"sixto4.example.com.":  {"2002:7f00:1::1"},
		"private.example.com.": {"10.1.2.3"},
		"mapped.example.com.":  {"::ffff:127.0.0.1"},
	} {
		var ips []netip.Addr
		for _, a := range addrs {
			ips = append(ips, netip.MustParseAddr(a))
		}
		c := NewClient(ClientOptions{TLSConfig: tc, Resolver: fakeResolver{name: ips}, DialTimeout: time.Second})
		_, err := c.Get("https://" + strings.TrimSuffix(name, ".") + ":" + port + "/")
		if !errors.Is(err, ErrBlockedAddress) {
			t.Errorf("%s -> %v: got %v, want ErrBlockedAddress", name, addrs, err)
		}
	}
	// The test allowance admits loopback only, never private or metadata addresses.
	c := NewClient(ClientOptions{TLSConfig: tc, AllowLoopback: true,
		Resolver: fakeResolver{"meta.example.com.": {netip.MustParseAddr("169.254.169.254")}}})
	if _, err := c.Get("https://meta.example.com:" + port + "/"); !errors.Is(err, ErrBlockedAddress) {
		t.Errorf("AllowLoopback reached a metadata address: %v", err)
	}
}

func TestClientRefusesStaticallyBadURLs(t *testing.T) {
	c := NewClient(ClientOptions{AllowLoopback: true})
	for _, u := range []string{"http://127.0.0.1:1/", "https://kubernetes.default/", "https://10.0.0.1/", "https://user:pw@example.com/"} {
		_, err := c.Get(u)
		var ne *Error
		if !errors.As(err, &ne) {
			t.Errorf("Get(%s): got %v, want *netguard.Error", u, err)
		}
	}
}

func TestClientRedirects(t *testing.T) {
	var srv *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/meta", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://169.254.169.254/latest/meta-data", http.StatusFound)
	})
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+r.Host+"/ok", http.StatusFound)
	})
	mux.HandleFunc("/hop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	srv, tc := tlsServer(t, mux)
	c := NewClient(ClientOptions{TLSConfig: tc, AllowLoopback: true})
	for _, p := range []string{"/loop", "/meta", "/plain"} {
		if _, err := c.Get(srv.URL + p); err == nil {
			t.Errorf("redirect %s followed", p)
		}
	}
	resp, err := c.Get(srv.URL + "/hop")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("one same-host hop: %v", err)
	}
	resp.Body.Close()
	none := NewClient(ClientOptions{TLSConfig: tc, AllowLoopback: true, MaxRedirects: -1})
	resp, err = none.Get(srv.URL + "/meta")
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("MaxRedirects<0 must return the 3xx itself: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestClientBoundsBodyAndTime(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/huge", func(w http.ResponseWriter, _ *http.Request) {
		buf := make([]byte, 64<<10)
		for i := 0; i < 1<<14; i++ { // up to 1 GiB, chunked (no Content-Length)
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/declared", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "3221225472")
		w.WriteHeader(200)
	})
	mux.HandleFunc("/exact", func(w http.ResponseWriter, _ *http.Request) { w.Write(make([]byte, 1024)) })
	release := make(chan struct{})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	srv, tc := tlsServer(t, mux)
	defer close(release)
	c := NewClient(ClientOptions{TLSConfig: tc, AllowLoopback: true, MaxResponseBytes: 1024, Timeout: 500 * time.Millisecond})

	resp, err := c.Get(srv.URL + "/huge")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if !errors.Is(err, ErrResponseTooLarge) {
		t.Errorf("huge chunked body: got %v, want ErrResponseTooLarge", err)
	}
	if _, err := c.Get(srv.URL + "/declared"); !errors.Is(err, ErrResponseTooLarge) {
		t.Errorf("declared 3 GB body: got %v", err)
	}
	resp, err = c.Get(srv.URL + "/exact")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err != nil || len(b) != 1024 {
		t.Errorf("body of exactly the limit: %d bytes, %v", len(b), err)
	}
	resp.Body.Close()

	start := time.Now()
	if _, err := c.Get(srv.URL + "/hang"); err == nil {
		t.Error("hanging receiver answered")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("hanging receiver held the client for %v", d)
	}
}

func TestClientRequiresTLS12(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS11}
	srv.StartTLS()
	defer srv.Close()
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	c := NewClient(ClientOptions{TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10}, AllowLoopback: true})
	if _, err := c.Get(srv.URL); err == nil {
		t.Fatal("TLS 1.1 server accepted")
	}
}
