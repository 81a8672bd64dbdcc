package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA returns a CA certificate (PEM) and a client certificate it signed for spiffe://apeiro.local/tenant/acme/...
func testCA(t *testing.T) ([]byte, *x509.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, ca, ca, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(der)
	u, _ := url.Parse("spiffe://apeiro.local/tenant/acme/component/crypto-manager")
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{u}}
	ld, err := x509.CreateCertificate(rand.Reader, leaf, caCert, leafKey.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	lc, _ := x509.ParseCertificate(ld)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), lc
}

func TestComponentVerifierFlags(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	f := filepath.Join(dir, "ca.crt")
	opts := func(file, td string) options {
		var o options
		o.certRenew.componentCAFile, o.certRenew.componentTrustDomain = file, td
		return o
	}
	if v, err := componentVerifier(ctx, opts("", "apeiro.local")); v != nil || err != nil {
		t.Fatalf("off by default: %v, %v", v, err)
	}
	caA, leafA := testCA(t)
	caB, leafB := testCA(t)
	if err := os.WriteFile(f, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]options{
		"missing file":      opts(filepath.Join(dir, "nope"), "apeiro.local"),
		"no CA in the file": opts(f, "apeiro.local"),
	} {
		if _, err := componentVerifier(ctx, o); err == nil || !strings.Contains(err.Error(), "--component-") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := os.WriteFile(f, caA, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := componentVerifier(ctx, opts(f, "Not A Domain")); err == nil {
		t.Error("invalid trust domain accepted")
	}

	old := componentBundleReload
	componentBundleReload = 20 * time.Millisecond
	t.Cleanup(func() { componentBundleReload = old })
	v, err := componentVerifier(ctx, opts(f, "apeiro.local"))
	if err != nil {
		t.Fatal(err)
	}
	if id, err := v.Identify([]*x509.Certificate{leafA}); err != nil || id.Tenant != "acme" {
		t.Fatalf("CA A: %+v, %v", id, err)
	}
	if _, err := v.Identify([]*x509.Certificate{leafB}); err == nil {
		t.Fatal("CA B trusted before the rollover")
	}
	// A broken bundle on disk keeps the current one; a rollover bundle (A+B) is picked up.
	if err := os.WriteFile(f, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := v.Identify([]*x509.Certificate{leafA}); err != nil {
		t.Fatalf("a broken bundle file replaced the trusted CA: %v", err)
	}
	if err := os.WriteFile(f, append(append([]byte{}, caA...), caB...), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, errA := v.Identify([]*x509.Certificate{leafA})
		_, errB := v.Identify([]*x509.Certificate{leafB})
		if errA == nil && errB == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollover bundle not picked up: %v / %v", errA, errB)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
