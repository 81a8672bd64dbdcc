package netguard

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// Defaults of NewClient. They are deliberately small: a tenant-supplied endpoint must not be able to hold a
// goroutine, a connection or memory for long.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultDialTimeout      = 5 * time.Second
	DefaultMaxResponseBytes = 1 << 20
	DefaultMaxRedirects     = 3
)

// ErrResponseTooLarge is returned while reading a response body longer than ClientOptions.MaxResponseBytes.
var ErrResponseTooLarge = errors.New("response body exceeds the size limit")

// Resolver resolves host names; *net.Resolver implements it. Tests inject one to make a public-looking name
// resolve to an internal address (DNS rebinding) without touching the machine's DNS.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ClientOptions configures NewClient. The zero value is the safe production setting.
type ClientOptions struct {
	// Timeout bounds a whole exchange including redirects and reading the body (default DefaultTimeout).
	Timeout time.Duration
	// DialTimeout bounds name resolution plus TCP connect (default DefaultDialTimeout).
	DialTimeout time.Duration
	// MaxResponseBytes bounds every response body; reading past it fails with ErrResponseTooLarge
	// (default DefaultMaxResponseBytes).
	MaxResponseBytes int64
	// MaxRedirects bounds the redirect hops followed; each hop passes the same checks as the first request.
	// 0 means DefaultMaxRedirects; a negative value follows none and returns the 3xx response itself.
	MaxRedirects int
	// TLSConfig is cloned; MinVersion is raised to TLS 1.2. Set RootCAs here for private CAs.
	TLSConfig *tls.Config
	// Resolver replaces net.DefaultResolver (tests).
	Resolver Resolver
	// AllowLoopback lets requests reach loopback addresses (127.0.0.0/8, ::1), for tests with local receivers.
	// Never set it in production code paths: it is the only way past the address rules, and it admits loopback
	// only (private, link-local and metadata addresses stay refused).
	AllowLoopback bool
}

// NewClient returns the http.Client every caller of a tenant- or configuration-supplied URL must use. Each request
// and each redirect hop must pass CheckURL; names are resolved as absolute names (no DNS search path), every
// resolved address must be public, and the dialer checks the address it actually connects to again (so DNS
// rebinding between check and connect cannot reach an internal address). Environment proxies are ignored, TLS is
// at least 1.2, and time and response size are bounded.
func NewClient(o ClientOptions) *http.Client {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.MaxRedirects == 0 {
		o.MaxRedirects = DefaultMaxRedirects
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	tlsConf := &tls.Config{}
	if o.TLSConfig != nil {
		tlsConf = o.TLSConfig.Clone()
	}
	if tlsConf.MinVersion < tls.VersionTLS12 {
		tlsConf.MinVersion = tls.VersionTLS12
	}
	d := &guardDialer{opts: o}
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would make the dial-time check judge the proxy, not the target
		DialContext:            d.DialContext,
		TLSClientConfig:        tlsConf,
		TLSHandshakeTimeout:    o.DialTimeout,
		ResponseHeaderTimeout:  o.Timeout,
		ExpectContinueTimeout:  time.Second,
		IdleConnTimeout:        30 * time.Second,
		MaxIdleConns:           64,
		MaxIdleConnsPerHost:    4,
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{
		Transport: &guardTransport{base: tr, opts: o},
		Timeout:   o.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if o.MaxRedirects < 0 {
				return http.ErrUseLastResponse
			}
			if len(via) > o.MaxRedirects {
				return &Error{fmt.Sprintf("stopped after %d redirects", o.MaxRedirects)}
			}
			if _, err := checkURL(req.URL.String(), o.AllowLoopback); err != nil {
				return fmt.Errorf("redirect refused: %w", err)
			}
			return nil
		},
	}
}

// guardTransport applies the static URL rules to every request (the first one and each redirect hop) and bounds
// the response body.
type guardTransport struct {
	base *http.Transport
	opts ClientOptions
}

func (t *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, err := checkURL(req.URL.String(), t.opts.AllowLoopback); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.opts.MaxResponseBytes {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: Content-Length %d > %d", ErrResponseTooLarge, resp.ContentLength, t.opts.MaxResponseBytes)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.opts.MaxResponseBytes}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the pooled connections.
func (t *guardTransport) CloseIdleConnections() { t.base.CloseIdleConnections() }

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Probe one byte: a body of exactly the limit is fine, one byte more is not.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, ErrResponseTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

type guardDialer struct{ opts ClientOptions }

func (d *guardDialer) allowed(ip netip.Addr) bool {
	return PublicAddr(ip) || (d.opts.AllowLoopback && ip.Unmap().IsLoopback())
}

// DialContext resolves the host itself so that every address of a name is judged (a name with one internal
// address is refused as a whole) and then connects through a net.Dialer whose Control hook checks the socket
// address once more right before connect.
func (d *guardDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBlockedAddress, addr)
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.DialTimeout)
	defer cancel()
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		// Absolute name: the resolver must not try "<host>.<namespace>.svc.cluster.local" first.
		name := host
		if !strings.HasSuffix(name, ".") {
			name += "."
		}
		addrs, err = d.opts.Resolver.LookupNetIP(ctx, "ip", name)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
	}
	for _, ip := range addrs {
		if !d.allowed(ip) {
			return nil, fmt.Errorf("%w: %s resolves to %s", ErrBlockedAddress, host, ip.Unmap())
		}
	}
	nd := &net.Dialer{Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !d.allowed(ap.Addr()) {
			return fmt.Errorf("%w: %s", ErrBlockedAddress, address)
		}
		return nil
	}}
	var firstErr error
	for _, ip := range addrs {
		c, err := nd.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}
