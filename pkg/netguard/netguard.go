// Package netguard decides whether an outbound URL supplied by a tenant may be called, and provides a dialer that
// enforces the same rule on the resolved address at connection time (so DNS rebinding cannot reach internal
// addresses). It is used by the admission webhook (static checks when a WebHookNotification or OIDC provider is
// written) and by plugins that call tenant-supplied URLs.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// MaxURLLength bounds tenant-supplied URLs.
const MaxURLLength = 2048

// Error explains why a URL or address is refused.
type Error struct{ Reason string }

func (e *Error) Error() string { return e.Reason }

// blockedSuffixes are host names that resolve to the cluster or the machine itself.
var blockedSuffixes = []string{".localhost", ".local", ".internal", ".svc", ".cluster.local", ".home.arpa"}

// nonPublic lists prefixes that are not globally routable, beyond what netip's predicates cover.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64 can embed any IPv4 address
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fc00::/7"),        // unique local
}

// PublicAddr reports whether ip is a globally routable unicast address.
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() {
		return false
	}
	if ip.Is4() && ip.As4()[0] == 0 { // 0.0.0.0/8 "this network"
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// CheckURL applies the static rules to a tenant-supplied URL: https only, a host name or public IP literal, no
// user information, no host that names the cluster or the machine. It does not resolve names; Dialer does that at
// connection time.
func CheckURL(raw string) (*url.URL, error) {
	if len(raw) > MaxURLLength {
		return nil, &Error{fmt.Sprintf("URL is longer than %d characters", MaxURLLength)}
	}
	if strings.ContainsAny(raw, " \t\r\n\\") {
		return nil, &Error{"URL contains whitespace or backslashes"}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, &Error{"URL does not parse"}
	}
	if u.Scheme != "https" {
		return nil, &Error{fmt.Sprintf("scheme %q is not allowed, only https", u.Scheme)}
	}
	if u.User != nil {
		return nil, &Error{"URL must not carry user information"}
	}
	// A trailing dot makes a name absolute ("127.0.0.1." or "localhost."); judge it without the dot.
	host := strings.TrimSuffix(u.Hostname(), ".")
	if host == "" {
		return nil, &Error{"URL has no host"}
	}
	if p := u.Port(); p != "" {
		if _, err := netip.ParseAddrPort("127.0.0.1:" + p); err != nil {
			return nil, &Error{fmt.Sprintf("port %q is not a valid port", p)}
		}
	}
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if !PublicAddr(ip) {
			return nil, &Error{fmt.Sprintf("host %s is not a public address (loopback, private, link-local and reserved ranges are refused)", ip)}
		}
		return u, nil
	}
	// Hosts like "2130706433" or "0x7f.1" are IPv4 in disguise for some resolvers; refuse numeric-looking labels.
	if looksNumeric(host) {
		return nil, &Error{fmt.Sprintf("host %q looks like an encoded IP address", host)}
	}
	h := strings.ToLower(host)
	if h == "localhost" || !strings.Contains(h, ".") {
		return nil, &Error{fmt.Sprintf("host %q is not a fully qualified public name", host)}
	}
	for _, s := range blockedSuffixes {
		if strings.HasSuffix(h, s) {
			return nil, &Error{fmt.Sprintf("host %q names an internal domain (%s)", host, s)}
		}
	}
	return u, nil
}

func looksNumeric(host string) bool {
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	for _, r := range strings.ToLower(last) {
		if !(r >= '0' && r <= '9' || r == 'x' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return last[0] >= '0' && last[0] <= '9'
}

// ErrBlockedAddress is returned by Dialer when the resolved address is not public.
var ErrBlockedAddress = errors.New("connection to a non-public address refused")

// Dialer returns a net.Dialer that refuses, after name resolution and before connecting, every address that is not
// public. AllowPrivate disables the check (tests with loopback receivers, explicit operator opt-in).
func Dialer(allowPrivate bool) *net.Dialer {
	d := &net.Dialer{}
	if !allowPrivate {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrBlockedAddress, address)
			}
			if !PublicAddr(ap.Addr()) {
				return fmt.Errorf("%w: %s", ErrBlockedAddress, ap.Addr())
			}
			return nil
		}
	}
	return d
}

// DialContext is a convenience for http.Transport.DialContext.
func DialContext(allowPrivate bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return Dialer(allowPrivate).DialContext
}
