package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAuthenticateCached: full verification (shape checks, signature, issuer, audience, time, roles) of one
// token with the issuer's keys cached. Run with -cpu 1 for the per-core figure.
func BenchmarkAuthenticateCached(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			f := newFixture(b)
			k := f.key
			if alg == "ES256" {
				k = f.ec
			}
			f.clock.t = time.Now()
			c := f.claims()
			c["exp"] = time.Now().Add(time.Hour).Unix()
			tok := k.sign(b, c)
			if _, err := f.auth.Authenticate(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := f.auth.Authenticate(context.Background(), tok); err != nil {
						b.Fatal(err)
					}
				}
			})
			reportCPU(b, cpu0)
		})
	}
}

// BenchmarkUnknownKidFlood: tokens with a fresh kid each; reports JWKS fetches caused (fetches/op stays ~0: one
// fetch per MinRefreshInterval, whatever the rate).
func BenchmarkUnknownKidFlood(b *testing.B) {
	f := newFixture(b)
	attacker := newRSAKey(b, "x")
	toks := make([]string, 256)
	for i := range toks {
		attacker.kid = fmt.Sprintf("flood-%d", i)
		toks[i] = attacker.sign(b, f.claims())
	}
	before := f.idp.jwksHits.Load()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, _ = f.auth.Authenticate(context.Background(), toks[i%len(toks)])
	}
	b.StopTimer()
	b.ReportMetric(float64(f.idp.jwksHits.Load()-before), "jwks-fetches")
	b.ReportMetric(float64(f.idp.jwksHits.Load()-before)/float64(b.N), "fetches/op")
}

// BenchmarkWorkloadKeyMTLS: workload key requests over mTLS (keep-alive connections, X.509-SVID verified per
// request against the bundle), with a fake key service and with the real key chain (local keystore wrapper,
// KubeKeyLookup and the chain reading key, Secret and Account from an in-memory API).
func BenchmarkWorkloadKeyMTLS(b *testing.B) {
	b.Run("fake-keys", func(b *testing.B) {
		keys := &fakeKeys{grants: map[string]*KeyGrant{"acme-ns/db-key": {Namespace: "acme-ns", Name: "db-key", Tenant: "acme", WorkloadIdentities: []string{benchWorkload}}}}
		benchWorkloadKeys(b, keys, keys)
	})
	b.Run("keychain-local", func(b *testing.B) {
		cw := newChainWorld(b, map[string][]string{"acme": {benchWorkload}})
		benchWorkloadKeys(b, cw.lookup, cw.chain)
	})
}

const benchWorkload = "spiffe://apeiro.test/tenant/acme/ns/payments/sa/api"

func benchWorkloadKeys(b *testing.B, lookup KeyLookup, svc KeyService) {
	good, _, v := newSPIFFEFixture(b)
	id := benchWorkload
	srv := httptest.NewUnstartedServer(&WorkloadKeyHandler{SPIFFE: v, Keys: lookup, Service: svc, Log: quietLog()})
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	b.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	chain, key := good.svid(b, id)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{chain[0].Raw}, PrivateKey: key, Leaf: chain[0]}}}}}
	b.ResetTimer()
	cpu0 := processCPU()
	defer reportCPU(b, cpu0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Post(srv.URL+"/v1/workload-keys/acme-ns/db-key/unwrap", "application/json", nil)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("HTTP %d", resp.StatusCode)
			}
		}
	})
}

// processCPU is the CPU time this process has used. On a shared, overloaded machine wall time per op mostly
// measures waiting for a core; CPU time per op is what one core can do.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	cpu := processCPU() - start
	if cpu <= 0 || b.N == 0 {
		return
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(b.N)/cpu.Seconds(), "ops/cpu-s")
}
