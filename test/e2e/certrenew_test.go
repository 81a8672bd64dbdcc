package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/internal/testpeers"
	"github.com/apeirora/apeiro-cmk/pkg/identity"
	"github.com/apeirora/apeiro-cmk/pkg/mtls"
)

// TestCertRenewalLoop runs the webhook binary with --cert-renew-config against cert-manager's real controllers, as
// deploy/components/cert-renewal deploys it: the component's renewal.yaml (plus short recheck and retry intervals),
// its RBAC, and the webhook authenticated as its own service account with deploy/base's RBAC — so a missing grant
// fails this test. It sees the Crypto (Manager) and Crypto (Migrate) Secrets issued with the tenant URI SAN, a
// damaged Secret renewed with a new key, the issued certificate accepted and refused over real mTLS by the workload
// key endpoint's handler and by the binary's own endpoint (--component-ca-file), and a failing renewal (issuer
// removed) raising the CertificateRenewalFailed Event while the Secret stays as it was.
func TestCertRenewalLoop(t *testing.T) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	if env.stack == nil {
		t.Skip("needs the suite's own control plane (the test restarts the webhook with its own flags)")
	}
	cmDir := testpeers.Env(t, "CERTMANAGER_BIN", "run `make certmanager-bin` and export CERTMANAGER_BIN=$(bash hack/peers/build-certmanager.sh)")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := env.stack
	kube, cm, kubectl := certManagerClients(ctx, t, s)
	const ns, issuerName = "apeiro-cmk-system", "apeiro-platform-ca"
	component := filepath.Join(env.root, "deploy", "components", "cert-renewal")

	// cert-manager: CRDs (kept installed, as in TestServingCertificateFromCertManager), the CA ClusterIssuer the
	// component names, and the controllers the loop needs: the CA issuer, the approver and the ClusterIssuer one.
	kubectl("apply", "--server-side", "--force-conflicts", "-f", filepath.Join(cmDir, "crds"))
	kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
	for _, n := range []string{ns, "cert-manager"} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	caPEM, caKeyPEM := renewalTestCA(t)
	if _, err := kube.CoreV1().Secrets("cert-manager").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: issuerName},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": caPEM, "tls.key": caKeyPEM}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cm.CertmanagerV1().ClusterIssuers().Create(ctx, &cmapi.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: issuerName},
		Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: issuerName}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctrl, err := controlplane.StartProcess("cert-manager", filepath.Join(cmDir, "certmanager-controller"),
		[]string{"--kubeconfig", s.KubeconfigPath(), "--cluster-resource-namespace", "cert-manager",
			"--controllers", "certificaterequests-issuer-ca,certificaterequests-approver,clusterissuers"},
		filepath.Join(t.TempDir(), "cert-manager.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctrl.Stop(5 * time.Second) })

	// The webhook's identity: its service account with deploy/base's RBAC and the component's.
	kubectl("apply", "-f", filepath.Join(env.root, "deploy", "base", "serviceaccount.yaml"),
		"-f", filepath.Join(env.root, "deploy", "base", "rbac.yaml"), "-f", filepath.Join(component, "rbac.yaml"))
	tok, err := kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "apeiro-cmk-webhook",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc, err := controlplane.Kubeconfig("apeiro-cmk-webhook", s.ControlPlane.RESTConfig().Host, s.ControlPlane.CACertPEM, tok.Status.Token)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kcPath, cfgPath := filepath.Join(dir, "webhook.kubeconfig"), filepath.Join(dir, "renewal.yaml")
	if err := os.WriteFile(kcPath, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	// The component's renewal.yaml, with intervals short enough for a test.
	b, err := os.ReadFile(filepath.Join(component, "renewal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfgMap corev1.ConfigMap
	if err := yaml.UnmarshalStrict(b, &cfgMap); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte(cfgMap.Data["renewal.yaml"]+"recheckInterval: 1s\nretryInterval: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c := context.Background()
		if err := s.RestartWebhook(c, nil, nil); err != nil {
			t.Errorf("restoring the webhook: %v", err)
		}
		for _, n := range []string{"crypto-manager-client-tls", "crypto-migrate-client-tls"} {
			_ = kube.CoreV1().Secrets(ns).Delete(c, n, metav1.DeleteOptions{})
		}
		_ = kube.CoreV1().Secrets("cert-manager").Delete(c, issuerName, metav1.DeleteOptions{})
		_ = cm.CertmanagerV1().ClusterIssuers().Delete(c, issuerName, metav1.DeleteOptions{})
		// deploy/base's service account and RBAC stay (they are what a deployment has anyway); the component's go.
		if out, err := exec.Command(s.Kubectl(), "--kubeconfig", s.KubeconfigPath(), "delete", "--ignore-not-found", "-f",
			filepath.Join(component, "rbac.yaml")).CombinedOutput(); err != nil {
			t.Errorf("removing the component's RBAC: %v\n%s", err, out)
		}
	})
	// The workload key endpoint, accepting component certificates of the issuer's CA beside SVIDs of an (unused)
	// SPIFFE trust domain.
	wkAddr, idPath, caPath := workloadKeyConfig(t, dir, caPEM)
	start := time.Now()
	// The later --kubeconfig wins over devstack's admin one.
	if err := s.RestartWebhook(ctx, []string{"--kubeconfig=" + kcPath, "--cert-renew-config=" + cfgPath,
		"--identity-config=" + idPath, "--component-ca-file=" + caPath}, nil); err != nil {
		t.Fatalf("%v\nwebhook log:\n%s", err, s.Webhook.LogTail(40))
	}
	t.Logf("webhook restarted as its service account with the renewal loop in %s", time.Since(start).Round(time.Millisecond))

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	waitIssued := func(name, notSerial string) (*corev1.Secret, *x509.Certificate) {
		t.Helper()
		var last string
		deadline := time.Now().Add(45 * time.Second)
		for time.Now().Before(deadline) {
			sec, err := kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			if err == nil {
				leaf, err := renewalLeaf(sec, roots)
				if err == nil && leaf.SerialNumber.String() != notSerial {
					return sec, leaf
				}
				if err != nil {
					last = err.Error()
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("Secret %s/%s not (re)issued within 45s (%s)\nwebhook log:\n%s\ncert-manager log:\n%s", ns, name, last,
			s.Webhook.LogTail(30), ctrl.LogTail(30))
		return nil, nil
	}

	// 1. Both Secrets issued by cert-manager, in the tenant scheme.
	secs, leaves := map[string]*corev1.Secret{}, map[string]*x509.Certificate{}
	for _, c := range []string{"crypto-manager", "crypto-migrate"} {
		secs[c], leaves[c] = waitIssued(c+"-client-tls", "")
		leaf := leaves[c]
		want := "spiffe://apeiro.local/tenant/platform/component/" + c
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want || leaf.Subject.CommonName != "cmk-platform" {
			t.Fatalf("%s: URI SANs %v CN %q, want %s / cmk-platform", c, leaf.URIs, leaf.Subject.CommonName, want)
		}
		if leaf.IsCA || len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
			t.Fatalf("%s: IsCA %v EKU %v", c, leaf.IsCA, leaf.ExtKeyUsage)
		}
		if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 719*time.Hour || d > 721*time.Hour {
			t.Fatalf("%s: lifetime %s, want 720h", c, d)
		}
		if !bytes.Contains(secs[c].Data["ca.crt"], bytes.TrimSpace(caPEM)) {
			t.Fatalf("%s: ca.crt is not the issuer's CA", c)
		}
	}
	if k, ok := leaves["crypto-migrate"].PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 3072 {
		t.Fatalf("crypto-migrate key %T, want RSA-3072", leaves["crypto-migrate"].PublicKey)
	}
	t.Logf("both client certificates issued %s after the restart", time.Since(start).Round(time.Millisecond))
	waitEvent(ctx, t, kube, ns, "crypto-manager-client-tls", "CertificateRenewed", "Normal")

	// 2. A damaged Secret (Crypto (Migrate)'s pair put into Crypto (Manager)'s: wrong component) is renewed, with
	// a new key, within the recheck interval.
	dmg := secs["crypto-manager"].DeepCopy()
	dmg.Data["tls.crt"], dmg.Data["tls.key"] = secs["crypto-migrate"].Data["tls.crt"], secs["crypto-migrate"].Data["tls.key"]
	if _, err := kube.CoreV1().Secrets(ns).Update(ctx, dmg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	renewedSec, renewed := waitIssued("crypto-manager-client-tls", leaves["crypto-migrate"].SerialNumber.String())
	if renewed.SerialNumber.Cmp(leaves["crypto-manager"].SerialNumber) == 0 || renewed.URIs[0].String() != leaves["crypto-manager"].URIs[0].String() {
		t.Fatalf("renewed certificate: serial %s URIs %v", renewed.SerialNumber, renewed.URIs)
	}
	if bytes.Equal(renewedSec.Data["tls.key"], secs["crypto-manager"].Data["tls.key"]) {
		t.Fatal("renewal reused the old key")
	}

	// 3. The issued certificate over real mTLS at the workload key endpoint's handler: accepted for its tenant's
	// key, refused for another tenant's key that lists it, refused when presented to a verifier of another CA.
	t.Run("mtls", func(t *testing.T) {
		pair, err := tls.X509KeyPair(renewedSec.Data["tls.crt"], renewedSec.Data["tls.key"])
		if err != nil {
			t.Fatal(err)
		}
		id := renewed.URIs[0].String()
		otherCA, _ := renewalTestCA(t)
		for _, tc := range []struct {
			name   string
			bundle []byte
			key    string
			code   int
		}{
			{"own tenant's key", caPEM, "platform-ns/db", http.StatusOK},
			{"another tenant's key listing the same ID", caPEM, "acme-ns/db", http.StatusForbidden},
			{"verifier trusting another CA", otherCA, "platform-ns/db", http.StatusUnauthorized},
		} {
			v, err := mtls.NewVerifier("apeiro.local", tc.bundle)
			if err != nil {
				t.Fatal(err)
			}
			keys := renewalKeys{"platform-ns/db": {Namespace: "platform-ns", Name: "db", Tenant: "platform", WorkloadIdentities: []string{id}},
				"acme-ns/db": {Namespace: "acme-ns", Name: "db", Tenant: "acme", WorkloadIdentities: []string{id}}}
			srv := httptest.NewUnstartedServer(&identity.WorkloadKeyHandler{Components: v, Keys: keys, Service: keys})
			srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
			srv.StartTLS()
			hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
				MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, //nolint:gosec // only the server's client verification is under test
				Certificates: []tls.Certificate{pair}}}}
			resp, err := hc.Post(srv.URL+identity.WorkloadKeyPath+tc.key+"/unwrap", "application/json", nil)
			if err != nil {
				srv.Close()
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			srv.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("%s: HTTP %d (%s), want %d", tc.name, resp.StatusCode, strings.TrimSpace(string(body)), tc.code)
			}
		}
	})

	// The same certificate at the webhook binary's workload key endpoint (--component-ca-file): authenticated,
	// so a key that does not exist is 403; the same SPIFFE ID from another CA is not authenticated (401).
	t.Run("workload key endpoint", func(t *testing.T) {
		pair, err := tls.X509KeyPair(renewedSec.Data["tls.crt"], renewedSec.Data["tls.key"])
		if err != nil {
			t.Fatal(err)
		}
		otherPEM, otherKey := renewalTestCA(t)
		forged := signClient(t, otherPEM, otherKey, renewed.URIs[0].String())
		for _, tc := range []struct {
			name string
			cert tls.Certificate
			code int
		}{{"issued certificate", pair, http.StatusForbidden}, {"same SPIFFE ID from another CA", forged, http.StatusUnauthorized}} {
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(s.WebhookCAPEM)
			hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
				MinVersion: tls.VersionTLS12, RootCAs: roots, Certificates: []tls.Certificate{tc.cert}}}}
			var code int
			eventually(t, 10*time.Second, func() error {
				resp, err := hc.Post("https://"+wkAddr+identity.WorkloadKeyPath+"platform-ns/no-such-key/unwrap", "application/json", nil)
				if err != nil {
					return err
				}
				resp.Body.Close()
				code = resp.StatusCode
				return nil
			})
			if code != tc.code {
				t.Errorf("%s: HTTP %d, want %d", tc.name, code, tc.code)
			}
		}
	})

	// 4. A failing renewal: the ClusterIssuer is gone and Crypto (Migrate)'s Secret is damaged. The loop reports
	// a Warning Event on the Secret and leaves the Secret as it is.
	if err := cm.CertmanagerV1().ClusterIssuers().Delete(ctx, issuerName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	mig, err := kube.CoreV1().Secrets(ns).Get(ctx, "crypto-migrate-client-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mig.Data["tls.crt"], mig.Data["tls.key"] = renewedSec.Data["tls.crt"], renewedSec.Data["tls.key"]
	if _, err := kube.CoreV1().Secrets(ns).Update(ctx, mig, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(ctx, t, kube, ns, "crypto-migrate-client-tls", "CertificateRenewalFailed", "Warning")
	if !strings.Contains(ev.Message, issuerName) || ev.Labels["cmk.apeiro.io/certificate-target"] != "crypto-migrate" {
		t.Fatalf("event: %q labels %v", ev.Message, ev.Labels)
	}
	t.Logf("failure event: %s", ev.Message)
	if got, _ := kube.CoreV1().Secrets(ns).Get(ctx, "crypto-migrate-client-tls", metav1.GetOptions{}); got == nil ||
		!bytes.Equal(got.Data["tls.crt"], renewedSec.Data["tls.crt"]) {
		t.Fatal("a failed renewal changed the Secret")
	}
	crs, err := cm.CertmanagerV1().CertificateRequests(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=apeiro-cmk-certissuer"})
	if err != nil || len(crs.Items) != 0 {
		t.Fatalf("CertificateRequests left behind: %d, %v", len(crs.Items), err)
	}
	t.Logf("renewal loop checked end to end in %s", time.Since(start).Round(time.Millisecond))
}

// waitEvent waits for an Event with reason and type about the Secret name, written by the renewal loop.
func waitEvent(ctx context.Context, t *testing.T, kube kubernetes.Interface, ns, name, reason, typ string) corev1.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		l, err := kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=" + reason + ",involvedObject.name=" + name})
		if err == nil {
			for _, e := range l.Items {
				if e.Type == typ && e.InvolvedObject.Kind == "Secret" {
					return e
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no %s Event %s about Secret %s/%s within 30s\nwebhook log:\n%s", typ, reason, ns, name, env.stack.Webhook.LogTail(30))
	return corev1.Event{}
}

// renewalLeaf parses and verifies a renewal target Secret: chain to roots, clientAuth, key matching the certificate.
func renewalLeaf(sec *corev1.Secret, roots *x509.CertPool) (*x509.Certificate, error) {
	pair, err := tls.X509KeyPair(sec.Data["tls.crt"], sec.Data["tls.key"])
	if err != nil {
		return nil, fmt.Errorf("pair: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, err
	}
	return leaf, nil
}

func renewalTestCA(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "apeiro platform CA (e2e)"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0), KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
}

// renewalKeys is a two-key KeyLookup + KeyService for the handler (the key chain itself is not under test here).
type renewalKeys map[string]*identity.KeyGrant

func (k renewalKeys) Lookup(_ context.Context, ns, name string) (*identity.KeyGrant, error) {
	if g, ok := k[ns+"/"+name]; ok {
		return g, nil
	}
	return nil, identity.ErrNoSuchKey
}

func (renewalKeys) UnwrapServiceKey(context.Context, string, string) ([]byte, error) {
	return bytes.Repeat([]byte{7}, 32), nil
}

func (renewalKeys) Encrypt(_ context.Context, _, _ string, pt, _ []byte) ([]byte, error) {
	return pt, nil
}
func (renewalKeys) Decrypt(_ context.Context, _, _ string, ct, _ []byte) ([]byte, error) {
	return ct, nil
}

// componentOverlays writes, into a copy of deploy/, one overlay per deploy/components/<name> (static-certs plus the
// component) and returns their kustomization.yaml paths, so TestDeployOverlaysDryRun dry-runs every component too.
func componentOverlays(t *testing.T, deploy string) []string {
	t.Helper()
	comps, _ := filepath.Glob(filepath.Join(deploy, "components", "*", "kustomization.yaml"))
	var out []string
	for _, c := range comps {
		name := filepath.Base(filepath.Dir(c))
		dir := filepath.Join(deploy, "overlays", "component-"+name)
		k := filepath.Join(dir, "kustomization.yaml")
		body := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../static-certs\ncomponents:\n  - ../../components/" + name + "\n"
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(k, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, k)
	}
	return out
}

// workloadKeyConfig writes an identity configuration serving the workload key endpoint on a free loopback port
// (with a SPIFFE bundle of a trust domain nobody issues in, since the endpoint needs one) and the component CA file.
func workloadKeyConfig(t *testing.T, dir string, caPEM []byte) (addr, idPath, caPath string) {
	t.Helper()
	ports, err := controlplane.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	addr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	spirePEM, _ := renewalTestCA(t)
	blk, _ := pem.Decode(spirePEM)
	spireCA, _ := x509.ParseCertificate(blk.Bytes)
	b := spiffebundle.New(spiffeid.RequireTrustDomainFromString("spire.e2e"))
	b.AddX509Authority(spireCA)
	bundleJSON, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	bundlePath, idPath, caPath := filepath.Join(dir, "spire.e2e.json"), filepath.Join(dir, "identity.yaml"), filepath.Join(dir, "component-ca.crt")
	for f, data := range map[string][]byte{
		bundlePath: bundleJSON,
		idPath:     []byte("spiffe:\n  bundleFiles: {spire.e2e: " + bundlePath + "}\nworkloadKeys:\n  bindAddress: \"" + addr + "\"\n"),
		caPath:     caPEM,
	} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return addr, idPath, caPath
}

// signClient issues a client certificate for uri with the CA (PEM pair).
func signClient(t *testing.T, caPEM, caKeyPEM []byte, uri string) tls.Certificate {
	t.Helper()
	caPair, err := tls.X509KeyPair(caPEM, caKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caPair.Certificate[0])
	u, _ := url.Parse(uri)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "cmk-platform"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{u}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caPair.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
