// Package cmtest starts the real cert-manager for tests: etcd + kube-apiserver (internal/controlplane, binaries from
// KUBE_BIN), cert-manager's CRDs and its controllers (CERTMANAGER_BIN, built by `make certmanager-bin` from
// hack/peers/certmanager), plus a CA Issuer whose CA the test holds. A missing peer skips locally and fails in CI
// (internal/testpeers).
package cmtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/internal/testpeers"
)

// Default names of the objects Start creates.
const (
	Namespace  = "cmk-certificates"
	IssuerName = "tenant-ca"
	// ClusterResourceNamespace holds ClusterIssuer secrets; it must exist before the controller starts.
	ClusterResourceNamespace = "cert-manager"
)

// Env is a running control plane with cert-manager.
type Env struct {
	CP         *controlplane.ControlPlane
	Kubeconfig string
	Kube       kubernetes.Interface
	CM         versioned.Interface
	// CA signs everything the Issuer issues.
	CA    *x509.Certificate
	CAPEM []byte

	bin        string
	controller *controlplane.Process
	starts     int
}

// Start brings everything up; t.Cleanup stops it.
func Start(t testing.TB) *Env {
	t.Helper()
	kubeBin := testpeers.Env(t, "KUBE_BIN", "run `make kube-bin` and export KUBE_BIN=$(bash hack/peers/build-kube.sh)")
	cmDir := testpeers.Env(t, "CERTMANAGER_BIN", "run `make certmanager-bin` and export CERTMANAGER_BIN=$(bash hack/peers/build-certmanager.sh)")
	bin := filepath.Join(cmDir, "certmanager-controller")
	if _, err := os.Stat(bin); err != nil {
		testpeers.Missing(t, "CERTMANAGER_BIN has no certmanager-controller: "+err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	work := t.TempDir()
	cp, err := controlplane.Start(ctx, controlplane.Config{BinDir: kubeBin, WorkDir: work})
	if err != nil {
		t.Fatalf("control plane: %v", err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	e := &Env{CP: cp, Kubeconfig: cp.KubeconfigPath, bin: bin}
	if e.Kube, err = kubernetes.NewForConfig(cp.RESTConfig()); err != nil {
		t.Fatal(err)
	}
	if e.CM, err = versioned.NewForConfig(cp.RESTConfig()); err != nil {
		t.Fatal(err)
	}

	// cert-manager's own CRDs, as shipped in its module.
	kubectl := func(args ...string) {
		t.Helper()
		out, err := exec.CommandContext(ctx, cp.Kubectl(), append([]string{"--kubeconfig", cp.KubeconfigPath}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	kubectl("apply", "--server-side", "-f", filepath.Join(cmDir, "crds"))
	kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")

	for _, ns := range []string{Namespace, ClusterResourceNamespace} {
		if _, err := e.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	caPEM, keyPEM := newCA(t)
	e.CAPEM = caPEM
	b, _ := pem.Decode(caPEM)
	e.CA, _ = x509.ParseCertificate(b.Bytes)
	for _, ns := range []string{Namespace, ClusterResourceNamespace} {
		if _, err := e.Kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "tenant-ca"},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": caPEM, "tls.key": keyPEM},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	spec := cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "tenant-ca"}}}
	if _, err := e.CM.CertmanagerV1().Issuers(Namespace).Create(ctx, &cmapi.Issuer{
		ObjectMeta: metav1.ObjectMeta{Name: IssuerName}, Spec: spec}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CM.CertmanagerV1().ClusterIssuers().Create(ctx, &cmapi.ClusterIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: IssuerName}, Spec: spec}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.StartController(t, true)
	e.WaitIssuerReady(t, IssuerName, "Issuer")
	e.WaitIssuerReady(t, IssuerName, "ClusterIssuer")
	return e
}

// StartController (re)starts the controller process; withApprover=false leaves cert-manager's approver out, so
// requests stay unapproved unless the test approves or denies them.
func (e *Env) StartController(t testing.TB, withApprover bool) {
	t.Helper()
	e.StopController(t)
	ctrls := []string{"certificaterequests-issuer-ca", "issuers", "clusterissuers"}
	if withApprover {
		ctrls = append(ctrls, "certificaterequests-approver")
	}
	e.starts++
	p, err := controlplane.StartProcess("cert-manager", e.bin, []string{
		"--kubeconfig", e.Kubeconfig, "--cluster-resource-namespace", ClusterResourceNamespace,
		"--controllers", strings.Join(ctrls, ","), "--v=1",
	}, filepath.Join(e.CP.WorkDir(), fmt.Sprintf("cert-manager-%d.log", e.starts)))
	if err != nil {
		t.Fatal(err)
	}
	e.controller = p
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
}

// StopController stops the controller process if it runs.
func (e *Env) StopController(t testing.TB) {
	t.Helper()
	if e.controller != nil {
		_ = e.controller.Stop(5 * time.Second)
		e.controller = nil
	}
}

// ControllerLog returns the tail of the controller's log (for failure messages).
func (e *Env) ControllerLog() string {
	if e.controller == nil {
		return ""
	}
	return e.controller.LogTail(40)
}

// WaitIssuerReady waits until the named Issuer (in Namespace) or ClusterIssuer is Ready.
func (e *Env) WaitIssuerReady(t testing.TB, name, kind string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var conds []cmapi.IssuerCondition
		if kind == "ClusterIssuer" {
			if ci, err := e.CM.CertmanagerV1().ClusterIssuers().Get(context.Background(), name, metav1.GetOptions{}); err == nil {
				conds = ci.Status.Conditions
			}
		} else if is, err := e.CM.CertmanagerV1().Issuers(Namespace).Get(context.Background(), name, metav1.GetOptions{}); err == nil {
			conds = is.Status.Conditions
		}
		for _, c := range conds {
			if c.Type == cmapi.IssuerConditionReady && c.Status == cmmeta.ConditionTrue {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s %s not Ready within 60s; controller log:\n%s", kind, name, e.ControllerLog())
}

// CertificateRequests returns the names of the CertificateRequests in Namespace.
func (e *Env) CertificateRequests(t testing.TB) []string {
	t.Helper()
	l, err := e.CM.CertmanagerV1().CertificateRequests(Namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, cr := range l.Items {
		names = append(names, cr.Name)
	}
	return names
}

// Roots is a pool holding the Issuer's CA.
func (e *Env) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(e.CA)
	return p
}

func newCA(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "apeiro tenant CA (test)", Organization: []string{"Apeiro"}},
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
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
}
