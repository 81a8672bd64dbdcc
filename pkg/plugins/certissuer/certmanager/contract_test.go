package certmanager_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	certv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/certmanager"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/certmanager/cmtest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/contracttest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

func TestMain(m *testing.M) { plugintest.Main(m) }

func yamlFor(e *cmtest.Env, kind, extra string) string {
	return "kubeconfig: " + e.Kubeconfig + "\nnamespace: " + cmtest.Namespace +
		"\nissuerRef: {name: " + cmtest.IssuerName + ", kind: " + kind + "}\ntrustDomain: apeiro.example\ntenantCNPrefix: cmk-\n" +
		"maxValidityDays: 90\ntimeout: 20s\n" + extra
}

// TestRealCertManager runs the contract suite, in both load modes, against cert-manager's own CA issuer and approver
// controllers on a real kube-apiserver, then the failure cases that need the real controller.
func TestRealCertManager(t *testing.T) {
	e := cmtest.Start(t)
	noLeftovers := func(t *testing.T) {
		t.Helper()
		if left := e.CertificateRequests(t); len(left) > 0 {
			t.Fatalf("CertificateRequests left behind: %v", left)
		}
	}

	for _, kind := range []string{"Issuer", "ClusterIssuer"} {
		t.Run("contract-"+kind, func(t *testing.T) {
			contracttest.Run(t, contracttest.Config{
				Name:               certmanager.BuiltinName,
				BuiltIn:            certmanager.NewBuiltIn,
				BinaryPackage:      "github.com/apeirora/apeiro-cmk/cmd/plugins/certissuer-certmanager",
				YAML:               yamlFor(e, kind, ""),
				EmptyConfigMessage: "configuration required",
				InvalidYAML:        yamlFor(e, kind, "unknownField: 1"),
				InvalidYAMLMessage: "certmanager: invalid configuration",
				CommonName:         "cmk-tenant-0815",
				TenantURI:          "spiffe://apeiro.example/tenant/tenant-0815/component/cmk-tenant",
				ValidityDays:       30,
				Roots:              e.Roots(),
				ExcessiveValidity:  &certv1.GetCertificateValidity{Value: 1, Type: certv1.ValidityType_VALIDITY_TYPE_YEARS},
				ExtraKeyFormats:    true,
			})
			noLeftovers(t)
		})
	}

	p := certmanager.New()
	configure := func(t *testing.T, y string) {
		t.Helper()
		if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: y}); err != nil {
			t.Fatal(err)
		}
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	req := func(cn string, key []byte) *certv1.GetCertificateRequest {
		return &certv1.GetCertificateRequest{CommonName: cn, Locality: []string{"eu-central"},
			Validity:   &certv1.GetCertificateValidity{Value: 7, Type: certv1.ValidityType_VALIDITY_TYPE_DAYS},
			PrivateKey: &certv1.PrivateKey{Data: key}}
	}

	t.Run("issued-certificate", func(t *testing.T) {
		configure(t, yamlFor(e, "Issuer", ""))
		start := time.Now()
		resp, err := p.GetCertificate(context.Background(), req("cmk-acme", keyPEM))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("issued through cert-manager in %s", time.Since(start))
		checkLeaf(t, e, resp.GetCertificateChain(), "acme", 7)
		noLeftovers(t)
	})

	t.Run("bad-input", func(t *testing.T) {
		configure(t, yamlFor(e, "Issuer", ""))
		weak, _ := rsa.GenerateKey(rand.Reader, 1024)
		weakPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(weak)})
		for name, tc := range map[string]struct {
			cn   string
			key  []byte
			code codes.Code
			want string
		}{
			"tenant not a URI segment": {"cmk-Acme_Corp", keyPEM, codes.InvalidArgument, "valid URI path segment"},
			"tenant with slash":        {"cmk-a/b", keyPEM, codes.InvalidArgument, "valid URI path segment"},
			"weak key":                 {"cmk-acme", weakPEM, codes.InvalidArgument, "1024 bits"},
		} {
			t.Run(name, func(t *testing.T) {
				_, err := p.GetCertificate(context.Background(), req(tc.cn, tc.key))
				if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want %v with %q", err, tc.code, tc.want)
				}
			})
		}
		noLeftovers(t)
	})

	t.Run("csr-for-another-tenant", func(t *testing.T) {
		configure(t, yamlFor(e, "Issuer", ""))
		ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		mk := func(cn, uri string) []byte {
			u, _ := url.Parse(uri)
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, URIs: []*url.URL{u}}, ec)
			if err != nil {
				t.Fatal(err)
			}
			return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		}
		for name, tc := range map[string]struct {
			csr  []byte
			code codes.Code
		}{
			"URI names globex":  {mk("cmk-acme", "spiffe://apeiro.example/tenant/globex/component/crypto-manager"), codes.PermissionDenied},
			"CN names globex":   {mk("cmk-globex", "spiffe://apeiro.example/tenant/acme/component/crypto-manager"), codes.PermissionDenied},
			"foreign domain":    {mk("cmk-acme", "spiffe://evil.example/tenant/acme/component/crypto-manager"), codes.PermissionDenied},
			"not a tenant path": {mk("cmk-acme", "spiffe://apeiro.example/acme"), codes.InvalidArgument},
		} {
			t.Run(name, func(t *testing.T) {
				_, err := p.SignCSR(context.Background(), "acme", tc.csr, 7*24*time.Hour)
				if status.Code(err) != tc.code {
					t.Fatalf("err = %v, want %v", err, tc.code)
				}
			})
		}
		chain, err := p.SignCSR(context.Background(), "acme", mk("cmk-acme", "spiffe://apeiro.example/tenant/acme/component/crypto-manager"), 7*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		checkLeaf(t, e, chain, "acme", 7)
		noLeftovers(t)
	})

	t.Run("issuer-does-not-exist", func(t *testing.T) {
		configure(t, strings.Replace(yamlFor(e, "Issuer", ""), "name: "+cmtest.IssuerName, "name: no-such-issuer", 1))
		_, err := p.GetCertificate(context.Background(), req("cmk-acme", keyPEM))
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), `"no-such-issuer" in namespace cmk-certificates does not exist`) {
			t.Fatalf("err = %v", err)
		}
		noLeftovers(t)
	})

	t.Run("issuer-not-ready", func(t *testing.T) {
		ctx := context.Background()
		_, err := e.CM.CertmanagerV1().Issuers(cmtest.Namespace).Create(ctx, &cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Name: "broken-ca"},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "no-such-secret"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitIssuerFalse(t, e, "broken-ca")
		configure(t, strings.Replace(yamlFor(e, "Issuer", ""), "name: "+cmtest.IssuerName, "name: broken-ca", 1))
		_, err = p.GetCertificate(ctx, req("cmk-acme", keyPEM))
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "is not ready") {
			t.Fatalf("err = %v", err)
		}
		noLeftovers(t)
	})

	// Without cert-manager's approver, a policy decides. The test plays that policy: it denies every request of
	// tenant "globex" and leaves the rest unapproved.
	t.Run("approval", func(t *testing.T) {
		e.StartController(t, false)
		defer e.StartController(t, true)
		stop := denyTenant(t, e, "globex")
		defer stop()
		configure(t, strings.Replace(yamlFor(e, "Issuer", ""), "timeout: 20s", "timeout: 3s", 1))

		_, err := p.GetCertificate(context.Background(), req("cmk-globex", keyPEM))
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "was denied: PolicyDenied: tenant globex is suspended") {
			t.Fatalf("denied: err = %v", err)
		}
		noLeftovers(t)

		start := time.Now()
		_, err = p.GetCertificate(context.Background(), req("cmk-acme", keyPEM))
		if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "never approved") {
			t.Fatalf("unapproved: err = %v", err)
		}
		if d := time.Since(start); d > 6*time.Second {
			t.Fatalf("timeout of 3s took %s", d)
		}
		noLeftovers(t)
	})

	t.Run("caller-cancels", func(t *testing.T) {
		e.StartController(t, false) // nothing approves, so the request waits
		defer e.StartController(t, true)
		configure(t, yamlFor(e, "Issuer", ""))
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := p.GetCertificate(ctx, req("cmk-acme", keyPEM))
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("err = %v", err)
		}
		noLeftovers(t)
	})
}

func checkLeaf(t *testing.T, e *cmtest.Env, chainPEM, tenant string, days int) {
	t.Helper()
	var certs []*x509.Certificate
	rest := []byte(chainPEM)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(certs) < 2 || !certs[len(certs)-1].Equal(e.CA) {
		t.Fatalf("chain of %d certificates does not end with the issuer's CA", len(certs))
	}
	leaf := certs[0]
	want := "spiffe://apeiro.example/tenant/" + tenant + "/component/"
	if len(leaf.URIs) != 1 || !strings.HasPrefix(leaf.URIs[0].String(), want) {
		t.Fatalf("URI SANs %v, want one starting %s", leaf.URIs, want)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) > 0 {
		t.Fatal("unexpected DNS/IP/e-mail SANs")
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || leaf.IsCA {
		t.Fatalf("EKU %v IsCA %v", leaf.ExtKeyUsage, leaf.IsCA)
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Fatalf("KeyUsage %v lacks digitalSignature", leaf.KeyUsage)
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if want := time.Duration(days) * 24 * time.Hour; life < want-10*time.Minute || life > want+10*time.Minute {
		t.Fatalf("lifetime %s, want ≈ %s", life, want)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: e.Roots(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
}

func waitIssuerFalse(t *testing.T, e *cmtest.Env, name string) {
	t.Helper()
	for range 300 {
		is, err := e.CM.CertmanagerV1().Issuers(cmtest.Namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			for _, c := range is.Status.Conditions {
				if c.Type == cmapi.IssuerConditionReady && c.Status == cmmeta.ConditionFalse {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("issuer %s never became not-Ready:\n%s", name, e.ControllerLog())
}

// denyTenant marks every pending request labelled with tenant as Denied, like a policy approver would.
func denyTenant(t *testing.T, e *cmtest.Env, tenant string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			l, err := e.CM.CertmanagerV1().CertificateRequests(cmtest.Namespace).List(ctx, metav1.ListOptions{LabelSelector: certmanager.LabelTenant + "=" + tenant})
			if err == nil {
				for i := range l.Items {
					cr := &l.Items[i]
					if len(cr.Status.Conditions) > 0 {
						continue
					}
					cr.Status.Conditions = append(cr.Status.Conditions, cmapi.CertificateRequestCondition{
						Type: cmapi.CertificateRequestConditionDenied, Status: cmmeta.ConditionTrue,
						Reason: "PolicyDenied", Message: "tenant " + tenant + " is suspended", LastTransitionTime: &metav1.Time{Time: time.Now()},
					})
					_, _ = e.CM.CertmanagerV1().CertificateRequests(cmtest.Namespace).UpdateStatus(ctx, cr, metav1.UpdateOptions{})
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() { cancel(); <-done }
}

// BenchmarkRealIssuance measures one GetCertificate through the real cert-manager (create, approval, CA signing,
// read back, delete) with a CMK-shaped RSA-3072 request.
func BenchmarkRealIssuance(b *testing.B) {
	e := cmtest.Start(b)
	p := certmanager.New()
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: yamlFor(e, "Issuer", "")}); err != nil {
		b.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		b.Fatal(err)
	}
	req := &certv1.GetCertificateRequest{CommonName: "cmk-acme", Locality: []string{"eu-central"},
		Validity:   &certv1.GetCertificateValidity{Value: 30, Type: certv1.ValidityType_VALIDITY_TYPE_DAYS},
		PrivateKey: &certv1.PrivateKey{Data: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})}}
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.GetCertificate(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
