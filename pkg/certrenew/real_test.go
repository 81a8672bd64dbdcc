package certrenew_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/apeirora/apeiro-cmk/pkg/certrenew"
	"github.com/apeirora/apeiro-cmk/pkg/mtls"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/certmanager"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/certmanager/cmtest"
)

// TestRealRenewal keeps the Crypto (Manager) and Crypto (Migrate) client certificates in Secrets, signed by the real
// cert-manager CA issuer, renews them at 2/3 of their lifetime, reports a failing renewal as a Kubernetes Event, and
// uses the issued certificates in real mTLS handshakes through pkg/mtls.
func TestRealRenewal(t *testing.T) {
	e := cmtest.Start(t)
	ctx := context.Background()
	issuer := certmanager.New()
	yaml := "kubeconfig: " + e.Kubeconfig + "\nnamespace: " + cmtest.Namespace + "\nissuerRef: {name: " + cmtest.IssuerName +
		", kind: ClusterIssuer}\ntrustDomain: apeiro.example\ntenantCNPrefix: cmk-\ntimeout: 20s\n"
	if _, err := issuer.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: yaml}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	targets := []certrenew.Target{}
	for _, c := range []string{"crypto-manager", "crypto-migrate"} {
		targets = append(targets, certrenew.Target{Name: c, TrustDomain: "apeiro.example", Tenant: "platform", Component: c,
			CommonName: "cmk-platform", Lifetime: 3 * time.Hour, RSABits: 3072,
			Sink: certrenew.NewSecretSink(e.Kube, cmtest.Namespace, c+"-client-tls")})
	}
	m, err := certrenew.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r := &certrenew.Renewer{Issuer: issuer, Targets: targets, Metrics: m,
		Events: certrenew.NewEventSink(e.Kube, cmtest.Namespace), Now: func() time.Time { return now }}

	serial := map[string]string{}
	for _, tg := range targets {
		start := time.Now()
		next, err := r.Check(ctx, tg)
		if err != nil {
			t.Fatalf("%s: %v\n%s", tg.Name, err, e.ControllerLog())
		}
		leaf := secretLeaf(t, e, tg.Name+"-client-tls")
		t.Logf("%s issued through cert-manager in %s, renewal planned at %s", tg.Name, time.Since(start), next.Format(time.TimeOnly))
		if d := next.Sub(leaf.NotBefore); d < 119*time.Minute || d > 121*time.Minute {
			t.Fatalf("renewal planned %s after NotBefore, want 2h (2/3 of 3h)", d)
		}
		if got := leaf.URIs[0].String(); got != "spiffe://apeiro.example/tenant/platform/component/"+tg.Name {
			t.Fatalf("URI SAN %s", got)
		}
		serial[tg.Name] = leaf.SerialNumber.String()
	}
	if left := e.CertificateRequests(t); len(left) > 0 {
		t.Fatalf("CertificateRequests left behind: %v", left)
	}

	// Before 2/3 nothing changes; after, a new certificate (new key) is issued.
	now = now.Add(time.Hour)
	if _, err := r.Check(ctx, targets[0]); err != nil || secretLeaf(t, e, "crypto-manager-client-tls").SerialNumber.String() != serial["crypto-manager"] {
		t.Fatalf("renewed early: %v", err)
	}
	now = now.Add(time.Hour + time.Minute)
	if _, err := r.Check(ctx, targets[0]); err != nil {
		t.Fatal(err)
	}
	renewed := secretLeaf(t, e, "crypto-manager-client-tls")
	if renewed.SerialNumber.String() == serial["crypto-manager"] {
		t.Fatal("not renewed after 2/3 of the lifetime")
	}

	// Strict isolation with the issued certificates: the platform's Crypto (Manager) is accepted for its tenant and
	// refused for another, over real TLS.
	t.Run("mtls", func(t *testing.T) {
		v, err := mtls.NewVerifier("apeiro.example", e.CAPEM)
		if err != nil {
			t.Fatal(err)
		}
		client := secretPair(t, e, "crypto-manager-client-tls")
		srvCert := selfSigned(t)
		for tenant, ok := range map[string]bool{"platform": true, "acme": false} {
			cfg := v.ServerConfig(mtls.ServerOptions{
				GetCertificate:      func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &srvCert, nil },
				TenantForServerName: func(string) (string, error) { return tenant, nil },
			})
			err := handshake(t, cfg, client)
			if (err == nil) != ok {
				t.Errorf("tenant %s: handshake error %v, want accepted=%v", tenant, err, ok)
			}
		}
	})

	// A failing renewal (the issuer was removed) keeps the old certificate and raises a Warning Event.
	if err := e.CM.CertmanagerV1().ClusterIssuers().Delete(ctx, cmtest.IssuerName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2*time.Hour + time.Minute)
	_, err = r.Check(ctx, targets[1])
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("err = %v", err)
	}
	if secretLeaf(t, e, "crypto-migrate-client-tls").SerialNumber.String() != serial["crypto-migrate"] {
		t.Fatal("failed renewal replaced the certificate")
	}
	evs, err := e.Kube.CoreV1().Events(cmtest.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "reason=" + certrenew.ReasonRenewalFailed})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) != 1 || evs.Items[0].InvolvedObject.Name != "crypto-migrate-client-tls" || evs.Items[0].Type != "Warning" ||
		!strings.Contains(evs.Items[0].Message, `ClusterIssuer "tenant-ca" does not exist`) {
		t.Fatalf("events = %+v", evs.Items)
	}
	t.Logf("event: %s", evs.Items[0].Message)
}

func secretPair(t *testing.T, e *cmtest.Env, name string) tls.Certificate {
	t.Helper()
	s, err := e.Kube.CoreV1().Secrets(cmtest.Namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func secretLeaf(t *testing.T, e *cmtest.Env, name string) *x509.Certificate {
	t.Helper()
	pair := secretPair(t, e, name)
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: e.Roots(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	return leaf
}

func selfSigned(t *testing.T) tls.Certificate { return e2eCA(t) }

func handshake(t *testing.T, srv *tls.Config, client tls.Certificate) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		errc <- tls.Server(c, srv).Handshake()
	}()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, //nolint:gosec // the server side is under test
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &client, nil }}
	if conn, err := tls.Dial("tcp", ln.Addr().String(), cfg); err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = conn.Read(make([]byte, 1))
		conn.Close()
	}
	return <-errc
}
