package openbao_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/vault"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/openbao"
)

// clientCert writes a client certificate (clientAuth) signed by a fresh CA and returns the CA PEM and the file paths.
func clientCert(t *testing.T, cn string) (caPEM []byte, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn + "-ca"}, NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), certFile, keyFile
}

// TestCertAuth: the plugin logs in with a client certificate over TLS (cert auth), and a certificate from an
// untrusted CA is refused with ErrDenied.
func TestCertAuth(t *testing.T) {
	srv := vault.StartTLS(t)
	ctx := ctxT(t, time.Minute)
	caPEM, certFile, keyFile := clientCert(t, "apeiro-cmk")
	root := srv.Root
	if err := root.Sys().PutPolicyWithContext(ctx, "apeiro-cmk", vault.PluginPolicy); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "sys/auth/cert", map[string]any{"type": "cert"}); err != nil {
		t.Fatalf("enable cert auth: %v", err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "auth/cert/certs/apeiro-cmk", map[string]any{
		"certificate": string(caPEM), "token_policies": []string{"apeiro-cmk"}, "token_ttl": "1h",
	}); err != nil {
		t.Fatalf("cert role: %v", err)
	}
	yaml := func(cert, key string) string {
		return fmt.Sprintf("address: %s\ncaCertFile: %q\nregion: %s\nauth: {method: cert, role: apeiro-cmk, certFile: %q, keyFile: %q}\n",
			srv.Addr, srv.CACertFile, region, cert, key)
	}
	cfg, err := openbao.ParseConfig(yaml(certFile, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	w := openbao.NewWrapper(cfg)
	key := setupTenantKey(t, ctx, w, newOps(t, yaml(certFile, keyFile)), "acme")
	aad := map[string]string{"tenant": "acme"}
	wr, err := w.Wrap(ctx, tenantCfg("acme"), key, []byte("data key"), aad)
	if err != nil {
		t.Fatalf("Wrap over cert auth: %v", err)
	}
	if got, err := w.Unwrap(ctx, tenantCfg("acme"), key, wr, aad); err != nil || string(got) != "data key" {
		t.Fatalf("Unwrap = %q, %v", got, err)
	}

	_, badCert, badKey := clientCert(t, "intruder")
	bad, _ := openbao.ParseConfig(yaml(badCert, badKey))
	_, err = openbao.NewWrapper(bad).Unwrap(ctx, tenantCfg("acme"), key, wr, aad)
	if !errors.Is(err, keychain.ErrDenied) {
		t.Fatalf("Unwrap with an untrusted client certificate: %v, want ErrDenied", err)
	}
}
