package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/internal/devstack"
	"github.com/apeirora/apeiro-cmk/internal/testpeers"
	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// TestServingCertificateFromCertManager has the webhook's serving certificate issued by the real cert-manager (its
// own controllers, hack/peers/certmanager) from the objects of deploy/overlays/cert-manager, then rotates it twice
// while admission requests flow, and requires that not one of them fails.
//
// What stands in for the cluster: the kubelet's Secret volume is the test copying the Secret into the webhook's
// --cert-dir on change; cainjector is the test putting the CA into the webhook configurations' caBundle (old and
// new CA together, as during any CA switch). The only change to the overlay's objects is an extra IP SAN
// 127.0.0.1, because this stack's API server calls the webhook on loopback instead of through its Service.
func TestServingCertificateFromCertManager(t *testing.T) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	if env.stack == nil {
		t.Skip("needs the suite's own control plane (the webhook's certificate directory is local)")
	}
	cmDir := testpeers.Env(t, "CERTMANAGER_BIN", "run `make certmanager-bin` and export CERTMANAGER_BIN=$(bash hack/peers/build-certmanager.sh)")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := env.stack
	kube, cm, kubectl := certManagerClients(ctx, t, s)

	// cert-manager: CRDs from its module, namespaces, controllers.
	kubectl("apply", "--server-side", "--force-conflicts", "-f", filepath.Join(cmDir, "crds"))
	kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
	// The CRDs stay installed: a CRD being deleted would break later tests that use the cert-manager.io API
	// (TestDeployOverlaysDryRun then dry-runs the overlay against cert-manager's real schema instead of its stubs).
	const ns = "apeiro-cmk-system"
	for _, n := range []string{ns, "cert-manager"} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	ctrl, err := controlplane.StartProcess("cert-manager", filepath.Join(cmDir, "certmanager-controller"),
		[]string{"--kubeconfig", s.KubeconfigPath(), "--cluster-resource-namespace", "cert-manager"},
		filepath.Join(t.TempDir(), "cert-manager.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctrl.Stop(5 * time.Second) })

	// The overlay's Issuers and Certificates, plus the loopback IP SAN.
	b, err := os.ReadFile(filepath.Join(env.root, "deploy", "overlays", "cert-manager", "certificates.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	manifest := strings.Replace(string(b), "  dnsNames:\n", "  ipAddresses: [127.0.0.1]\n  dnsNames:\n", 1)
	mf := filepath.Join(t.TempDir(), "certificates.yaml")
	if err := os.WriteFile(mf, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl("apply", "--server-side", "-f", mf)
	const certName, secretName = "apeiro-cmk-webhook-serving", "apeiro-cmk-webhook-tls"

	waitSecret := func(notSerial string) *corev1.Secret {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			sec, err := kube.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
			if err == nil && len(sec.Data["tls.crt"]) > 0 {
				if leaf := leafOf(t, sec.Data["tls.crt"]); leaf.SerialNumber.String() != notSerial {
					return sec
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("Secret %s/%s not (re)issued within 90s; cert-manager log:\n%s", ns, secretName, ctrl.LogTail(40))
		return nil
	}
	sec := waitSecret("")
	leaf := leafOf(t, sec.Data["tls.crt"])
	if !strings.Contains(strings.Join(leaf.DNSNames, ","), "apeiro-cmk-webhook.apeiro-cmk-system.svc") || len(leaf.IPAddresses) != 1 {
		t.Fatalf("serving certificate SANs: %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	cmCA := sec.Data["ca.crt"]
	if len(cmCA) == 0 {
		t.Fatal("Secret has no ca.crt")
	}

	// "cainjector": trust both CAs, then hand the webhook cert-manager's certificate.
	setCABundle(ctx, t, s, append(append([]byte{}, s.WebhookCAPEM...), cmCA...))
	certDir := filepath.Join(s.ControlPlane.WorkDir(), "webhook-certs") // devstack's --cert-dir
	origCert, err1 := os.ReadFile(filepath.Join(certDir, "tls.crt"))
	origKey, err2 := os.ReadFile(filepath.Join(certDir, "tls.key"))
	if err1 != nil || err2 != nil {
		t.Fatalf("webhook certificate directory not found (%v, %v)", err1, err2)
	}
	t.Cleanup(func() {
		// Give the stack its own certificate and configurations back for the tests that follow.
		mount(t, certDir, origCert, origKey)
		waitServing(t, s.WebhookPort, leafOf(t, origCert).SerialNumber.String())
		if err := s.InstallWebhookConfigurations(context.Background()); err != nil {
			t.Errorf("restoring the webhook configurations: %v", err)
		}
	})

	// Admission load: dry-run creates only the webhook can deny. A denial is a served admission; anything else
	// (TLS failure, "failed calling webhook", timeout) is a failed one.
	var served, failed atomic.Int64
	var firstFailure atomic.Value
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for loadCtx.Err() == nil {
				err := s.Client.Create(loadCtx, probeTenantE2E(), client.DryRunAll)
				switch {
				case devstack.IsWebhookDenial(err):
					served.Add(1)
				case loadCtx.Err() != nil:
				default:
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err)
				}
			}
		})
	}

	serial := leaf.SerialNumber.String()
	mount(t, certDir, sec.Data["tls.crt"], sec.Data["tls.key"])
	waitServing(t, s.WebhookPort, serial)
	for i := range 2 {
		time.Sleep(2 * time.Second) // let admissions flow on the current certificate
		start := time.Now()
		triggerRenewal(ctx, t, cm, ns, certName)
		sec = waitSecret(serial)
		serial = leafOf(t, sec.Data["tls.crt"]).SerialNumber.String()
		mount(t, certDir, sec.Data["tls.crt"], sec.Data["tls.key"])
		waitServing(t, s.WebhookPort, serial)
		t.Logf("rotation %d: cert-manager reissued and the webhook serves serial %s after %s", i+1, serial, time.Since(start))
	}
	time.Sleep(2 * time.Second)
	stopLoad()
	wg.Wait()
	t.Logf("admissions served during issuance and two rotations: %d, failed: %d", served.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d admission requests failed; first: %v", failed.Load(), firstFailure.Load())
	}
	if served.Load() < 20 {
		t.Fatalf("only %d admissions served: the load did not run", served.Load())
	}
}

func probeTenantE2E() *cmkv1alpha1.Tenant {
	return &cmkv1alpha1.Tenant{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-cm-rotation-probe"},
		Spec:       cmkv1alpha1.TenantSpec{Type: cmkv1alpha1.TenantTypeNested, Parent: "e2e-cm-parent-that-does-not-exist", Region: "probe"},
	}
}

func leafOf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mount writes the pair as the kubelet updates a Secret volume: each file replaced atomically.
func mount(t *testing.T, dir string, certPEM, keyPEM []byte) {
	t.Helper()
	for _, f := range []struct {
		name string
		data []byte
	}{{"tls.key", keyPEM}, {"tls.crt", certPEM}} {
		tmp := filepath.Join(dir, "."+f.name+".new")
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			t.Fatal(err)
		}
	}
}

// waitServing waits until the webhook's TLS listener presents the certificate with serial.
func waitServing(t *testing.T, port int, serial string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for time.Now().Before(deadline) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // only reading the served certificate
		if err == nil {
			got := conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
			conn.Close()
			if got == serial {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the webhook did not serve certificate %s within 45s", serial)
}

// setCABundle replaces the caBundle of every webhook of the stack's configurations.
func setCABundle(ctx context.Context, t *testing.T, s *devstack.Stack, bundle []byte) {
	t.Helper()
	for _, o := range s.WebhookConfigurations() {
		switch c := o.(type) {
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			for i := range c.Webhooks {
				c.Webhooks[i].ClientConfig.CABundle = bundle
			}
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			for i := range c.Webhooks {
				c.Webhooks[i].ClientConfig.CABundle = bundle
			}
		}
		if err := devstack.Apply(ctx, s.Client, o); err != nil {
			t.Fatal(err)
		}
	}
	// The API server's webhook registry is fed by an informer; give it a moment, then make sure it answers.
	if err := s.WaitWebhookAnswering(ctx); err != nil {
		t.Fatal(err)
	}
}

// triggerRenewal does what `cmctl renew` does: set the Issuing condition, which cert-manager's trigger honours.
func triggerRenewal(ctx context.Context, t *testing.T, cm versioned.Interface, ns, name string) {
	t.Helper()
	for range 20 {
		c, err := cm.CertmanagerV1().Certificates(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		busy := false
		for _, cond := range c.Status.Conditions {
			if cond.Type == cmapi.CertificateConditionIssuing && cond.Status == cmmeta.ConditionTrue {
				busy = true
			}
		}
		if busy {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		now := metav1.Now()
		c.Status.Conditions = append(c.Status.Conditions, cmapi.CertificateCondition{Type: cmapi.CertificateConditionIssuing,
			Status: cmmeta.ConditionTrue, Reason: "ManuallyTriggered", Message: "e2e rotation under load", LastTransitionTime: &now,
			ObservedGeneration: c.Generation})
		if _, err := cm.CertmanagerV1().Certificates(ns).UpdateStatus(ctx, c, metav1.UpdateOptions{}); err == nil {
			return
		} else if !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
	t.Fatal("could not trigger a renewal")
}

// certManagerClients are what the cert-manager tests share: typed clients of the stack's API server and a kubectl
// bound to its kubeconfig that fails the test on error.
func certManagerClients(ctx context.Context, t *testing.T, s *devstack.Stack) (*kubernetes.Clientset, *versioned.Clientset, func(args ...string)) {
	t.Helper()
	rc := s.ControlPlane.RESTConfig()
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := versioned.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) {
		t.Helper()
		out, err := exec.CommandContext(ctx, s.Kubectl(), append([]string{"--kubeconfig", s.KubeconfigPath()}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return kube, cm, kubectl
}
