package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/internal/devstack"
	"github.com/apeirora/apeiro-cmk/internal/testpeers"
)

const helmNamespace = "apeiro-cmk-system"

// helmCLI runs the Helm CLI of HELM_BIN against one control plane, with a private Helm home.
type helmCLI struct {
	bin, kubeconfig, home string
}

func (h helmCLI) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.bin, append(args, "--kubeconfig", h.kubeconfig)...)
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+h.home, "HELM_CACHE_HOME="+h.home, "HELM_DATA_HOME="+h.home)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// TestHelmLifecycle installs the chart (deploy/chart/apeiro-cmk) with the Helm CLI built from Go modules into a
// fresh kube-apiserver of its own (the suite's control plane already holds deploy/base's objects under the same
// names), then: admission answers through the Helm-registered webhook configurations; `helm upgrade` with changed
// values that also moves the webhooks to a second webhook instance (a rollout: new instance Ready first, old one
// stopped after a drain pause) while writes of our kinds run loses none; an upgrade whose CRDs drop a stored version
// is refused before anything changes; `helm uninstall` keeps tenants' objects, unless crds.keepOnUninstall=false
// says otherwise.
//
// There are no nodes, so the chart's Deployment never runs pods: the webhook runs as a local process and the chart
// points the webhook configurations at it (webhook.url, certificates.mode=static), as the suite does with
// deploy/base.
func TestHelmLifecycle(t *testing.T) {
	needOwnCluster(t)
	helmDir := testpeers.Env(t, "HELM_BIN", "run `make helm-bin` and set HELM_BIN=$(bash hack/peers/build-helm.sh)")
	ctx := testContext(t)
	start := time.Now()
	work := t.TempDir()

	cp, err := controlplane.Start(ctx, controlplane.Config{BinDir: env.kubeBin, WorkDir: filepath.Join(work, "cp")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	c, err := client.New(cp.RESTConfig(), client.Options{Scheme: env.scheme})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane up in %.1fs", time.Since(start).Seconds())

	// The webhook's serving pair for 127.0.0.1 and the chart values that point the webhooks at it.
	certDir := filepath.Join(work, "certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca, err := controlplane.NewCA("apeiro-cmk-helm-e2e-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.IssueServing("apeiro-cmk-webhook", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := kp.WriteFiles(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certDir, "ca.crt"), ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	keystoreDir := filepath.Join(work, "keystore-local") // shared by both instances, as a volume would be
	h := helmCLI{bin: filepath.Join(helmDir, "helm"), kubeconfig: cp.KubeconfigPath, home: filepath.Join(work, "helm-home")}
	chart := filepath.Join(env.root, "deploy", "chart", "apeiro-cmk")
	values := func(url string) []string {
		return []string{"-n", helmNamespace, "--set", "certificates.mode=static",
			"--set-file", "certificates.static.caCrt=" + filepath.Join(certDir, "ca.crt"),
			"--set-file", "certificates.static.tlsCrt=" + filepath.Join(certDir, "tls.crt"),
			"--set-file", "certificates.static.tlsKey=" + filepath.Join(certDir, "tls.key"),
			"--set", "webhook.url=" + url}
	}
	// The first instance's address is in the release from the start; it starts once the release's CRDs exist (the
	// webhook's informers need them), like the Deployment's first pods.
	old := newHelmWebhook(t, "old")

	// --- install ---
	if out, err := h.run(ctx, append([]string{"install", "apeiro-cmk", chart, "--create-namespace"}, values(old.url)...)...); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("helm install: %s", firstLines(out, 6))
	}
	for _, o := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: helmNamespace, Name: "apeiro-cmk-webhook"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: helmNamespace, Name: "apeiro-cmk-webhook-tls"}},
		&apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: "tenants.cmk.apeiro.io"}},
	} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
			t.Fatalf("after helm install: %T %s: %v", o, o.GetName(), err)
		}
	}

	old.start(t, cp.KubeconfigPath, certDir, keystoreDir)
	probe := &cmkv1alpha1.Tenant{
		ObjectMeta: metav1.ObjectMeta{Name: "helm-probe"},
		Spec:       cmkv1alpha1.TenantSpec{Type: cmkv1alpha1.TenantTypeNested, Parent: "helm-probe-no-such-parent", Region: "eu-central"},
	}
	eventually(t, 60*time.Second, func() error {
		err := c.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		if devstack.IsWebhookDenial(err) {
			return nil
		}
		if exited, _ := old.proc.Exited(); exited {
			t.Fatalf("the webhook exited: %v\n%s", old.proc.ExitError(), old.proc.LogTail(30))
		}
		return fmt.Errorf("webhook not answering through the Helm-installed configuration yet: %v", err)
	})
	t.Logf("installed and answering after %.1fs", time.Since(start).Seconds())

	// --- admission: a denied and an allowed write of each kind we write here ---
	tenant := &cmkv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "helm-acme"},
		Spec: cmkv1alpha1.TenantSpec{Type: cmkv1alpha1.TenantTypeRoot, Region: "eu-central"}}
	if err := c.Create(ctx, tenant); err != nil {
		t.Fatalf("creating Root tenant: %v", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "helm-acme", Labels: map[string]string{"cmk.apeiro.io/tenant": "helm-acme"}}}
	eventually(t, 10*time.Second, func() error { return ignoreExists(c.Create(ctx, ns.DeepCopy())) })
	account := &cmkv1alpha1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: "helm-acme", Name: "main"},
		Spec: cmkv1alpha1.AccountSpec{Keystore: "local", KeyRef: "helm-acme-l1", Region: "eu-central"}}
	eventually(t, 10*time.Second, func() error { return ignoreExists(c.Create(ctx, account.DeepCopy())) })
	if err := c.Get(ctx, client.ObjectKeyFromObject(account), account); err != nil {
		t.Fatal(err)
	}
	if got := account.Labels["cmk.apeiro.io/tenant"]; got != "helm-acme" {
		t.Errorf("the mutating webhook did not stamp the tenant label: %q", got)
	}
	orphan := &cmkv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "helm-orphan"},
		Spec: cmkv1alpha1.TenantSpec{Type: cmkv1alpha1.TenantTypeNested, Parent: "helm-no-such-parent", Region: "eu-central"}}
	if err := c.Create(ctx, orphan); !devstack.IsWebhookDenial(err) {
		t.Fatalf("a tenant with an unknown parent: want a webhook denial, got %v", err)
	}

	// --- upgrade under load: writes of our kinds keep succeeding (allowed ones admitted, denied ones denied by the
	// webhook itself, never a failure to call it) ---
	var ok, failed atomic.Int64
	var failures sync.Map
	loopCtx, stopLoop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; loopCtx.Err() == nil; i++ {
			tn := &cmkv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("helm-loop-%d", i)},
				Spec: cmkv1alpha1.TenantSpec{Type: cmkv1alpha1.TenantTypeNested, Parent: "helm-acme", Region: "eu-central"}}
			err := c.Create(loopCtx, tn)
			if err == nil {
				// An UPDATE through the mutating and validating webhooks, then a denied write (dry run).
				err = c.Patch(loopCtx, tn, client.RawPatch("application/merge-patch+json",
					[]byte(fmt.Sprintf(`{"metadata":{"annotations":{"apeiro-cmk.io/loop":"%d"}}}`, i))))
			}
			if err == nil {
				bad := probe.DeepCopy()
				bad.Name = fmt.Sprintf("helm-loop-bad-%d", i)
				if derr := c.Create(loopCtx, bad, client.DryRunAll); !devstack.IsWebhookDenial(derr) {
					err = fmt.Errorf("denied write: want a webhook denial, got %v", derr)
				}
			}
			switch {
			case err == nil:
				ok.Add(1)
			case loopCtx.Err() != nil:
			default:
				failed.Add(1)
				failures.Store(i, err.Error())
			}
		}
	}()
	time.Sleep(time.Second) // writes before the upgrade, too
	// What a rollout does with the chart's Deployment (maxSurge 1, maxUnavailable 0, --shutdown-delay): the new
	// instance is Ready first, the upgrade moves the webhooks to it while the old one still serves, and the old one
	// stops only after a drain pause. The upgrade also changes the webhook configuration itself (the OpenKCM entry).
	next := newHelmWebhook(t, "new")
	next.start(t, cp.KubeconfigPath, certDir, keystoreDir)
	upStart := time.Now()
	out, err := h.run(ctx, append([]string{"upgrade", "apeiro-cmk", chart, "--set", "replicas=2", "--set", "webhook.maxDepth=6",
		"--set", "webhook.openkcmTenant=true"}, values(next.url)...)...)
	upDur := time.Since(upStart)
	if err == nil {
		time.Sleep(2 * time.Second) // the drain pause (the chart's --shutdown-delay is 15 s; Stop adds the binary's 5 s)
		_ = old.proc.Stop(10 * time.Second)
		time.Sleep(time.Second) // writes after the old instance is gone
	}
	stopLoop()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("helm upgrade took %.1fs: %s", upDur.Seconds(), firstLines(out, 4))
	failures.Range(func(k, v any) bool {
		t.Errorf("write %v failed during the upgrade: %v", k, v)
		return true
	})
	if ok.Load() < 5 || failed.Load() != 0 {
		t.Fatalf("during helm upgrade: %d write rounds succeeded, %d failed; want >= 5 and 0", ok.Load(), failed.Load())
	}
	t.Logf("during helm upgrade and the switch to the new instance: %d write rounds (create, update, denied create), 0 failed", ok.Load())
	dep := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: helmNamespace, Name: "apeiro-cmk-webhook"}, dep); err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 2 || !containsString(dep.Spec.Template.Spec.Containers[0].Args, "--max-depth=6") {
		t.Errorf("upgrade not applied: replicas %d, args %q", *dep.Spec.Replicas, dep.Spec.Template.Spec.Containers[0].Args)
	}

	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: "apeiro-cmk-webhook"}, vwc); err != nil {
		t.Fatal(err)
	}
	if n := len(vwc.Webhooks); n != 6 || vwc.Webhooks[n-1].Name != "vtenant.operations.openkcm.io" || !strings.HasPrefix(*vwc.Webhooks[0].ClientConfig.URL, next.url) {
		t.Errorf("upgrade did not re-register the webhooks: %d entries, first URL %v", n, vwc.Webhooks[0].ClientConfig.URL)
	}

	// --- an upgrade whose CRD no longer serves a stored version is refused, and changes nothing ---
	dropped := filepath.Join(work, "chart-dropping-v1alpha1")
	if err := copyTree(chart, dropped); err != nil {
		t.Fatal(err)
	}
	crdFile := filepath.Join(dropped, "files", "crds", "cmk.apeiro.io_tenants.yaml")
	b, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatal(err)
	}
	// The version entry's name (controller-gen writes it after additionalPrinterColumns, at this indentation).
	nb := bytes.Replace(b, []byte("\n    name: v1alpha1\n"), []byte("\n    name: v1alpha2\n"), 1)
	if bytes.Equal(b, nb) {
		t.Fatal("the tenants CRD has no `name: v1alpha1` version entry to rename")
	}
	if err := os.WriteFile(crdFile, nb, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = h.run(ctx, append([]string{"upgrade", "apeiro-cmk", dropped, "--reuse-values"}, "-n", helmNamespace)...)
	if err == nil {
		t.Fatalf("an upgrade dropping the stored version v1alpha1 was accepted:\n%s", out)
	}
	if !strings.Contains(err.Error(), "tenants.cmk.apeiro.io: version v1alpha1 is still in use") {
		t.Fatalf("refused, but not by the stored-version guard: %v", err)
	}
	t.Logf("upgrade dropping a stored CRD version refused: %s", lineContaining(err.Error(), "still in use"))
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := c.Get(ctx, client.ObjectKey{Name: "tenants.cmk.apeiro.io"}, crd); err != nil {
		t.Fatal(err)
	}
	if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Name != "v1alpha1" {
		t.Errorf("the refused upgrade changed the CRD: versions %v", crd.Spec.Versions)
	}
	if hist, err := h.run(ctx, "history", "apeiro-cmk", "-n", helmNamespace, "--max", "1"); err != nil || !strings.Contains(hist, "deployed") {
		t.Errorf("the release is not left deployed at its last good revision: %v\n%s", err, hist)
	}
	// Invalid values against the live release: refused by the schema, naming the field, before anything is sent.
	if _, err := h.run(ctx, "upgrade", "apeiro-cmk", chart, "-n", helmNamespace, "--reuse-values", "--set", "replicas=0"); err == nil ||
		!strings.Contains(err.Error(), "/replicas") {
		t.Errorf("upgrade with replicas=0: want a schema error naming /replicas, got %v", err)
	}
	// Without the chart's guard the API server still refuses the CRD (its own storedVersions rule), but only while
	// Helm is applying the release, which is then marked failed: the guard is what keeps the release deployed.
	out, err = h.run(ctx, "upgrade", "apeiro-cmk", dropped, "-n", helmNamespace, "--reuse-values", "--set", "crds.guardStoredVersions=false")
	if err == nil || !strings.Contains(err.Error(), "storedVersions") {
		t.Fatalf("upgrade dropping v1alpha1 without the guard: want the API server's storedVersions refusal, got %v\n%s", err, out)
	}
	t.Logf("without the guard, the API server refuses: %s", lineContaining(err.Error(), "storedVersions"))
	if err := c.Get(ctx, client.ObjectKey{Name: "tenants.cmk.apeiro.io"}, crd); err != nil || crd.Spec.Versions[0].Name != "v1alpha1" {
		t.Fatalf("tenants CRD after the unguarded upgrade: %v %v", err, crd.Spec.Versions)
	}

	// The new instance served admission after the switch (its own counters), and the zero failures above mean
	// something: with no instance behind the registered URL, a write of our kinds fails (failurePolicy Fail).
	scrapeAdmissionMetrics(t, next.metricsAddr)
	_ = next.proc.Stop(10 * time.Second)
	unreached := &cmkv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "helm-unreached"},
		Spec: cmkv1alpha1.TenantSpec{Type: cmkv1alpha1.TenantTypeRoot, Region: "eu-central"}}
	if err := c.Create(ctx, unreached, client.DryRunAll); err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Fatalf("with the webhook stopped, a Tenant write: want a failed webhook call, got %v", err)
	}
	// Back on the same address: deleting tenants' objects along with the CRDs below goes through admission too.
	next.start(t, cp.KubeconfigPath, certDir, keystoreDir)

	// --- uninstall keeps tenants' objects (and the CRDs that hold them) ---
	if out, err := h.run(ctx, "uninstall", "apeiro-cmk", "-n", helmNamespace, "--wait", "--timeout", "30s"); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("helm uninstall: %s", firstLines(out, 8))
	}
	for _, o := range []client.Object{tenant.DeepCopy(), account.DeepCopy(), &cmkv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "helm-loop-0"}}} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
			t.Errorf("after helm uninstall: %T %s: %v (tenants' objects must stay)", o, o.GetName(), err)
		} else if o.GetDeletionTimestamp() != nil {
			t.Errorf("after helm uninstall: %T %s is being deleted", o, o.GetName())
		}
	}
	gone := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: helmNamespace, Name: "apeiro-cmk-webhook"}, gone); !apierrors.IsNotFound(err) {
		t.Errorf("the Deployment survived helm uninstall: %v", err)
	}

	// --- ... unless the operator says so: reinstall (adopts the kept CRDs) with crds.keepOnUninstall=false ---
	if _, err := h.run(ctx, append([]string{"install", "apeiro-cmk", chart, "--set", "crds.keepOnUninstall=false"}, values(next.url)...)...); err != nil {
		t.Fatalf("reinstall over the kept CRDs: %v", err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(tenant), tenant); err != nil {
		t.Fatalf("reinstall lost a tenant: %v", err)
	}
	if _, err := h.run(ctx, "uninstall", "apeiro-cmk", "-n", helmNamespace); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() error {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		err := c.Get(ctx, client.ObjectKey{Name: "tenants.cmk.apeiro.io"}, crd)
		if apierrors.IsNotFound(err) || (err == nil && crd.DeletionTimestamp != nil) {
			return nil
		}
		return fmt.Errorf("tenants CRD not being deleted after uninstall with crds.keepOnUninstall=false: %v", err)
	})
	// The uninstall also removed the webhook (here: stop the process), so nothing releases the in-use finalizers on
	// Tenants and Accounts any more: the operator's clean-up step of docs/install.md ("Uninstalling") finishes it.
	_ = next.proc.Stop(10 * time.Second)
	stripped := 0
	for _, list := range []client.ObjectList{&cmkv1alpha1.TenantList{}, &cmkv1alpha1.AccountList{}} {
		if err := c.List(ctx, list); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		objs, _ := meta.ExtractList(list)
		for _, o := range objs {
			obj := o.(client.Object)
			if len(obj.GetFinalizers()) == 0 {
				continue
			}
			if err := c.Patch(ctx, obj, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`))); err != nil && !apierrors.IsNotFound(err) {
				t.Fatalf("removing the finalizers of %s: %v", obj.GetName(), err)
			}
			stripped++
		}
	}
	eventually(t, 45*time.Second, func() error {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		err := c.Get(ctx, client.ObjectKey{Name: "tenants.cmk.apeiro.io"}, crd)
		if apierrors.IsNotFound(err) {
			return nil
		}
		var conds []string
		for _, cd := range crd.Status.Conditions {
			conds = append(conds, fmt.Sprintf("%s=%s (%s)", cd.Type, cd.Status, cd.Message))
		}
		return fmt.Errorf("tenants CRD still present after uninstall with crds.keepOnUninstall=false (%d objects' finalizers removed; %s): %v",
			stripped, strings.Join(conds, "; "), err)
	})
	if err := c.Get(ctx, client.ObjectKeyFromObject(tenant), &cmkv1alpha1.Tenant{}); !meta.IsNoMatchError(err) && !apierrors.IsNotFound(err) {
		t.Errorf("tenant %s after the wiping uninstall: %v", tenant.Name, err)
	}
	t.Logf("whole lifecycle took %.1fs", time.Since(start).Seconds())
}

// helmWebhook is one local webhook process: what a pod of the chart's Deployment runs.
type helmWebhook struct {
	name                         string
	port                         int
	proc                         *controlplane.Process
	url, metricsAddr, healthAddr string
}

// newHelmWebhook reserves free ports for an instance.
func newHelmWebhook(t *testing.T, name string) *helmWebhook {
	t.Helper()
	ports, err := controlplane.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	return &helmWebhook{name: name, port: ports[0], url: fmt.Sprintf("https://127.0.0.1:%d", ports[0]),
		metricsAddr: fmt.Sprintf("127.0.0.1:%d", ports[1]), healthAddr: fmt.Sprintf("127.0.0.1:%d", ports[2])}
}

// start runs the instance and waits until it is Ready (/readyz: listener up, caches synced).
func (w *helmWebhook) start(t *testing.T, kubeconfig, certDir, keystoreDir string) {
	t.Helper()
	var err error
	w.proc, err = controlplane.StartProcess("helm-webhook-"+w.name, env.webhookBin, []string{
		"--kubeconfig=" + kubeconfig, "--cert-dir=" + certDir, "--webhook-host=127.0.0.1",
		fmt.Sprintf("--webhook-port=%d", w.port), "--metrics-bind-address=" + w.metricsAddr,
		"--health-probe-bind-address=" + w.healthAddr, "--region-source=sis",
	}, filepath.Join(filepath.Dir(certDir), "webhook-"+w.name+".log"), "APEIRO_LOCAL_KEYSTORE_DIR="+keystoreDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("webhook %s log tail:\n%s", w.name, w.proc.LogTail(30))
		}
		_ = w.proc.Stop(10 * time.Second)
	})
	hc := &http.Client{Timeout: 2 * time.Second}
	eventually(t, 60*time.Second, func() error {
		if exited, _ := w.proc.Exited(); exited {
			t.Fatalf("webhook %s exited: %v\n%s", w.name, w.proc.ExitError(), w.proc.LogTail(30))
		}
		resp, err := hc.Get("http://" + w.healthAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("webhook %s /readyz: %s", w.name, resp.Status)
		}
		return nil
	})
}

// scrapeAdmissionMetrics logs the webhook's own admission counters (what docs/install.md's troubleshooting starts
// from), and fails when they are missing: the webhook answered requests, so they must be there.
func scrapeAdmissionMetrics(t *testing.T, addr string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if !bytes.Contains(b, []byte("apeiro_cmk_admission_duration_seconds_count")) {
		t.Fatalf("no apeiro_cmk_admission_duration_seconds in /metrics")
	}
}

func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " | ")
}

func lineContaining(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return errors.New(s).Error()
}

// TestHelmShapesDryRun: the chart's other shapes (the whole profile as external binaries, kcp mode, the optional
// components) are accepted by a real API server (`kubectl apply --dry-run=server` on the suite's cluster; nothing
// is stored). Webhook configurations are renamed as in TestDeployOverlaysDryRun, so they do not collide with the
// suite's own.
func TestHelmShapesDryRun(t *testing.T) {
	needCluster(t)
	helm := filepath.Join(testpeers.Env(t, "HELM_BIN", "run `make helm-bin` and set HELM_BIN=$(bash hack/peers/build-helm.sh)"), "helm")
	ctx := testContext(t)
	chart := filepath.Join(env.root, "deploy", "chart", "apeiro-cmk")
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: helmNamespace}}
	if err := env.client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ensureCertManagerKinds(t)
	home := t.TempDir()
	for name, flags := range map[string][]string{
		"external-profile": {"-f", filepath.Join(chart, "profiles", "external.yaml"), "--set", `plugins.keystorePlugins=local=LOCAL\,aws=AWS`},
		"kcp":              {"--set", "mode=kcp", "--set", "kcp.kubeconfigSecret=kcp-kubeconfig", "--set", "kcp.context=shard-base"},
		"components":       {"--set", "webhook.openkcmTenant=true", "--set", "webhook.clientCAConfigMap=apeiro-cmk-apiserver-client-ca", "--set", "crds.install=false"},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.CommandContext(ctx, helm, append([]string{"template", "apeiro-cmk", chart, "-n", helmNamespace}, flags...)...)
			cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("helm template: %v\n%s", err, stderr.String())
			}
			rendered, _, err := renameWebhookConfigurations(stdout.String())
			if err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(t.TempDir(), name+".yaml")
			if err := os.WriteFile(f, rendered, 0o644); err != nil {
				t.Fatal(err)
			}
			res := runKubectl(ctx, "apply", "--dry-run=server", "-f", f)
			if res.err != nil {
				t.Fatalf("kubectl apply --dry-run=server of the chart (%s): %s", name, res.output())
			}
			t.Logf("%s", firstLines(res.stdout, 40))
		})
	}
}
