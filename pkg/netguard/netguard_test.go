package netguard

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestCheckURL(t *testing.T) {
	cases := []struct {
		url string
		ok  bool
	}{
		{"https://hooks.slack.com/services/T0/B0/x", true},
		{"https://93.184.216.34/hook", true},
		{"https://example.com:8443/x?y=1", true},
		{"http://example.com/x", false},
		{"ftp://example.com/x", false},
		{"https://user:pw@example.com/x", false},
		{"https://127.0.0.1/x", false},
		{"https://[::1]/x", false},
		{"https://10.0.0.1/x", false},
		{"https://169.254.169.254/latest/meta-data", false},
		{"https://[fd00::1]/x", false},
		{"https://[::ffff:127.0.0.1]/x", false},
		{"https://100.64.1.1/x", false},
		{"https://0.0.0.0/x", false},
		{"https://localhost/x", false},
		{"https://LOCALHOST./x", false},
		{"https://127.0.0.1./x", false},
		{"https://169.254.169.254./latest", false},
		{"https://0177.0.0.1./x", false},
		{"https://127.1./x", false},
		{"https://example.com./x", true},
		{"https://metadata/x", false},
		{"https://kubernetes.default.svc/x", false},
		{"https://api.cluster.local/x", false},
		{"https://2130706433/x", false},
		{"https://0x7f.0x0.0x0.0x1/x", false},
		{"https://example.com:99999/x", false},
		{"https://exa mple.com/x", false},
		{"https:///x", false},
		{"", false},
		{"https://kubernetes.default/x", false},
		{"https://kubernetes.default./x", false},
		{"https://my-svc.tenant-a/x", false},
		{"https://printer.lan/x", false},
		{"https://hooks.example.test/x", false},
		{"https://127.0.0.0。1/x", false},
		{"https://exämple.com/x", false},
		{"https://xn--exmple-cua.com/x", true},
		{"https://a_b.example.com/x", false},
		{"https://[64:ff9b::7f00:1]/x", false},
		{"https://[64:ff9b:1::a9fe:a9fe]/x", false},
		{"https://[2002:7f00:1::1]/x", false},
		{"https://[2001::1]/x", false},
		{"https://[::127.0.0.1]/x", false},
		{"https://[fe80::1%25eth0]/x", false},
		{"https://192.0.0.192/x", false},
		{"https://foo.co.uk/x", true},
		{"https://login.initech.example/x", true},
		{"https://default.example/x", true},
		{"https://app.blogspot.com/x", true},
	}
	for _, c := range cases {
		_, err := CheckURL(c.url)
		if (err == nil) != c.ok {
			t.Errorf("CheckURL(%q) error = %v, want ok=%v", c.url, err, c.ok)
		}
	}
}

func TestDialerRefusesLoopback(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Dialer(false).DialContext(context.Background(), "tcp", l.Addr().String())
	if !errors.Is(err, ErrBlockedAddress) {
		t.Fatalf("dial loopback: got %v, want ErrBlockedAddress", err)
	}
	c, err := Dialer(true).DialContext(context.Background(), "tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dial loopback with allowPrivate: %v", err)
	}
	c.Close()
}

func TestPublicAddr(t *testing.T) {
	for s, want := range map[string]bool{"8.8.8.8": true, "2606:4700::1111": true, "192.168.1.1": false, "fe80::1": false, "224.0.0.1": false, "198.18.0.1": false} {
		if got := PublicAddr(netip.MustParseAddr(s)); got != want {
			t.Errorf("PublicAddr(%s) = %v, want %v", s, got, want)
		}
	}
}

func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"https://example.com/x", "https://[::1]:443/", "https://0x7f.1/", "http://a", "https://a.b.c.d.e/%zz", "https://kubernetes.default/", "https://127.0.0.0\u30021/", "https://[2002:7f00:1::1]/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := CheckURL(raw)
		if err != nil {
			return
		}
		if u.Scheme != "https" || u.User != nil || u.Hostname() == "" {
			t.Fatalf("CheckURL accepted %q (%+v)", raw, u)
		}
		for i := 0; i < len(u.Hostname()); i++ {
			if u.Hostname()[i] >= 0x80 {
				t.Fatalf("CheckURL accepted non-ASCII host %q", raw)
			}
		}
		if ip, err := netip.ParseAddr(u.Hostname()); err == nil && !PublicAddr(ip) {
			t.Fatalf("CheckURL accepted non-public IP %q", raw)
		}
	})
}
