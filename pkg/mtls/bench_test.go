package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
)

// BenchmarkHandshake measures full TLS 1.3 handshakes (ECDSA P-256 on both sides, in memory over net.Pipe, one per
// iteration) with the client certificate verified by the Verifier (chain, clientAuth, tenant URI SAN, tenant from
// SNI), next to crypto/tls's own client certificate verification (chain only, no tenant) as the baseline.
func BenchmarkHandshake(b *testing.B) {
	c := newCA(b, "bench CA")
	client := c.issue(b, "cmk-acme", []string{uri("acme")})
	server := c.issue(b, "server", nil)
	v, err := NewVerifier(td, c.pem)
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.cert)
	configs := map[string]*tls.Config{
		"verifier": v.ServerConfig(ServerOptions{
			GetCertificate:      func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &server, nil },
			TenantForServerName: func(string) (string, error) { return "acme", nil },
		}),
		"stdlib-chain-only": {MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots},
	}
	for _, name := range []string{"verifier", "stdlib-chain-only"} {
		srvCfg := configs[name]
		b.Run(name, func(b *testing.B) {
			cliCfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{client}}
			for b.Loop() {
				cc, sc := net.Pipe()
				errc := make(chan error, 1)
				go func() {
					s := tls.Server(sc, srvCfg)
					errc <- s.Handshake()
					_ = sc.Close() // the raw pipe: a TLS close_notify would block on the unread pipe
				}()
				cl := tls.Client(cc, cliCfg)
				if err := cl.Handshake(); err != nil {
					b.Fatal(err)
				}
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
				_ = cc.Close()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}

// BenchmarkHandshakeAuthorize (mtls_test.go) is the verifier's own share: one chain verification and the URI SAN.
