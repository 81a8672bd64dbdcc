package internalca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	certv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/contracttest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/internalca"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

func TestMain(m *testing.M) { plugintest.Main(m) }

// writeCA writes a fresh CA as PEM files (the way a Secret is mounted) so
// both the builtin and the external process load it from disk.
func writeCA(t *testing.T) (*x509.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "apeiro contract CA", Organization: []string{"Apeiro"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, certFile, keyFile
}

func TestContract(t *testing.T) {
	ca, certFile, keyFile := writeCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	contracttest.Run(t, contracttest.Config{
		BuiltIn:       internalca.NewBuiltIn,
		BinaryPackage: "github.com/apeirora/apeiro-cmk/cmd/plugins/certissuer-internalca",
		YAML: "caCertFile: " + certFile + "\ncaKeyFile: " + keyFile +
			"\ntenantCNPrefix: cmk-\nspiffeTrustDomain: apeiro.example\nmaxValidityDays: 90\n",
		ConfigOptional:     false,
		EmptyConfigMessage: "a CA is required",
		InvalidYAML:        "caCertFile: " + certFile + "\ncaKeyFile: " + keyFile + "\nunknownField: 1\n",
		InvalidYAMLMessage: "internalca: invalid configuration",
		CommonName:         "cmk-tenant-0815",
		TenantURI:          "spiffe://apeiro.example/tenant/tenant-0815/component/cmk-tenant",
		Locality:           []string{"eu-central"},
		ValidityDays:       30,
		Roots:              roots,
		ExcessiveValidity:  &certv1.GetCertificateValidity{Value: 1, Type: certv1.ValidityType_VALIDITY_TYPE_YEARS},
		ExtraKeyFormats:    true,
	})
}

// TestContractEphemeral runs the suite on the development configuration
// (builtin only; it trusts the CA the chain ends with).
func TestContractEphemeral(t *testing.T) {
	contracttest.Run(t, contracttest.Config{
		BuiltIn:            internalca.NewBuiltIn,
		YAML:               "ephemeralCA: true\n",
		EmptyConfigMessage: "a CA is required",
		CommonName:         "tenant-1",
		TenantURI:          "spiffe://apeiro.local/tenant/tenant-1/component/cmk-tenant",
	})
}
