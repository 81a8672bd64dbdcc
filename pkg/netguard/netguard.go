// Package netguard decides whether an outbound URL supplied by a tenant may be called. CheckURL is the static rule
// (the admission webhook applies it when a WebHookNotification or OIDC provider is written); NewClient is the one
// HTTP client constructor for every outbound call to a tenant- or configuration-supplied URL: it applies CheckURL to
// each request and redirect hop and checks every resolved address again at connection time, so DNS rebinding
// cannot reach internal addresses. A test in this package fails when code under pkg/ or cmd/ builds its own client.
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

	"golang.org/x/net/publicsuffix"
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
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated), embeds an IPv4 address
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64 well-known prefix embeds any IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64 embeds any IPv4 address
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/32"),       // Teredo embeds an (obfuscated) IPv4 address
	netip.MustParsePrefix("2001:10::/28"),    // ORCHID
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4 embeds any IPv4 address
	netip.MustParsePrefix("fc00::/7"),        // unique local
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
}

// PublicAddr reports whether ip is a globally routable unicast address.
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || !ip.IsGlobalUnicast() || ip.Zone() != "" || ip.IsUnspecified() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
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
// user information, no host that names the cluster or the machine. It does not resolve names; the client from
// NewClient does that at connection time and checks every resolved address again.
func CheckURL(raw string) (*url.URL, error) { return checkURL(raw, false) }

func checkURL(raw string, allowLoopback bool) (*url.URL, error) {
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
		if !PublicAddr(ip) && !(allowLoopback && ip.Unmap().IsLoopback()) {
			return nil, &Error{fmt.Sprintf("host %s is not a public address (loopback, private, link-local and reserved ranges are refused)", ip)}
		}
		return u, nil
	}
	// Only plain ASCII names: IDNA maps look-alikes such as U+3002 "。" to ".", so "127.0.0.0。1" would become an
	// address after we judged it a name. Internationalised names must be written in their xn-- form.
	if err := checkHostName(host); err != nil {
		return nil, err
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
	// Inside a cluster "kubernetes.default" or "<service>.<namespace>" resolves through the DNS search path to a
	// Service. A public name ends in a suffix from the public suffix list; anything else (".default", ".corp",
	// ".lan", ".test") is an internal or reserved name. The dialer also resolves names as absolute names, so the
	// search path never applies to what passes here.
	// ".example" (RFC 2606) is kept for documentation and examples: it is never delegated, so it cannot resolve.
	if suffix, icann := publicsuffix.PublicSuffix(h); !icann && !strings.Contains(suffix, ".") && suffix != "example" {
		return nil, &Error{fmt.Sprintf("host %q does not end in a public top-level domain (in-cluster and private names are refused)", host)}
	}
	return u, nil
}

// checkHostName accepts a DNS name of ASCII letters, digits and hyphens in non-empty labels.
func checkHostName(host string) error {
	if len(host) > 253 {
		return &Error{"host name is longer than 253 characters"}
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 {
			return &Error{fmt.Sprintf("host %q has an empty or over-long label", host)}
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return &Error{fmt.Sprintf("host %q contains characters other than ASCII letters, digits, '-' and '.' (write internationalised names in xn-- form)", host)}
			}
		}
	}
	return nil
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
// public. AllowPrivate disables the check (tests with loopback receivers, explicit operator opt-in). HTTP callers use
// NewClient instead, which also resolves names itself, follows the URL rules on redirects and bounds responses.
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
