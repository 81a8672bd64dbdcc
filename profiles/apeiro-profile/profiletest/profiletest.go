// Package profiletest holds the checks that the profile tests (profiles/apeiro-profile) and the definition-of-done
// suite (test/dod) both run against a loaded plugin profile, so the two check the same thing the same way.
package profiletest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"

	certificate_issuerv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"
)

// IssueCertificate asks the profile's certificate issuer for a 7-day certificate for a fresh RSA-3072 key (the key
// size CMK uses for tenant certificates) and returns the chain's leaf; an error, a chain that is not PEM or a leaf
// that does not parse fails the test.
func IssueCertificate(ctx context.Context, t testing.TB, ci certificate_issuerv1.CertificateIssuerServiceClient, commonName, locality string) *x509.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	resp, err := ci.GetCertificate(ctx, &certificate_issuerv1.GetCertificateRequest{
		CommonName: commonName, Locality: []string{locality},
		Validity:   &certificate_issuerv1.GetCertificateValidity{Value: 7, Type: certificate_issuerv1.ValidityType_VALIDITY_TYPE_DAYS},
		PrivateKey: &certificate_issuerv1.PrivateKey{Data: keyPEM},
	})
	if err != nil {
		t.Fatalf("certificate issuer GetCertificate: %v", err)
	}
	block, _ := pem.Decode([]byte(resp.GetCertificateChain()))
	if block == nil {
		t.Fatal("certificate issuer returned no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("certificate issuer returned a certificate that does not parse: %v", err)
	}
	return leaf
}
