package alerts

import (
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/internal/devstack"
	"github.com/apeirora/apeiro-cmk/internal/testpeers"
	amtest "github.com/apeirora/apeiro-cmk/internal/testpeers/alertmanager"
	"github.com/apeirora/apeiro-cmk/pkg/alerts/amclient"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/netguard"
)

// TestKubernetesEventsToAlertmanagerAndTenantWebhooks runs the whole handler against a real kube-apiserver and a
// real Alertmanager: Events our controllers emit on an Account reach Alertmanager and, signed, the owning
// tenant's WebHookNotification (loaded live from the API), never another tenant's; Events from other reporters are
// ignored; delivery state lands on the object's status; a WebHookNotification changed to name a missing Secret
// reports it on status and nothing is sent unsigned; a deleted one receives nothing.
func TestKubernetesEventsToAlertmanagerAndTenantWebhooks(t *testing.T) {
	kubeBin := testpeers.Env(t, "KUBE_BIN", "run `make kube-bin` and export KUBE_BIN=$(bash hack/peers/build-kube.sh)")
	am := amtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cp, err := controlplane.Start(ctx, controlplane.Config{BinDir: kubeBin, WorkDir: filepath.Join(t.TempDir(), "cp")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	scheme := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{clientgoscheme.AddToScheme, cmkv1.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	cfg := cp.RESTConfig()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	_, file, _, _ := runtime.Caller(0)
	if err := devstack.InstallCRDs(ctx, c, filepath.Join(filepath.Dir(file), "..", "..", "deploy", "base", "crds"), time.Minute); err != nil {
		t.Fatal(err)
	}

	secret := []byte("tenant-signing-key")
	r := newReceiver(t, secret, nil)
	other := newReceiver(t, secret, nil)
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "acme-ns", Labels: map[string]string{cmkv1.TenantLabel: "acme"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "globex-ns", Labels: map[string]string{cmkv1.TenantLabel: "globex"}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "acme-ns", Name: "hook-key"}, Data: map[string][]byte{"key": secret}},
		&cmkv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: "acme-ns", Name: "main", Labels: map[string]string{cmkv1.TenantLabel: "acme"}},
			Spec: cmkv1.AccountSpec{Keystore: "local", KeyRef: "l1", Region: "eu-central"}},
		whn("acme-ns", "ops", "acme", r.srv.URL+"/hook", "hook-key", cmkv1.FormatJSON, cmkv1.EventL1KeyUnreachable, cmkv1.EventAccountReady),
		whn("globex-ns", "spy", "globex", other.srv.URL+"/hook", "", cmkv1.FormatJSON, cmkv1.EventL1KeyUnreachable),
	} {
		o.SetUID("")
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	if err != nil {
		t.Fatal(err)
	}
	log := testr.New(t)
	amc, _ := amclient.New(amclient.Options{URL: am.URL})
	h := &Handler{Log: log, AM: NewAMSink(AMOptions{Poster: amc, Linger: 20 * time.Millisecond, Log: log})}
	h.Webhooks = NewDispatcher(WebhookOptions{
		Client:  netguard.NewClient(netguard.ClientOptions{TLSConfig: r.tls, AllowLoopback: true, MaxRedirects: -1, Timeout: 2 * time.Second}),
		Secrets: KubeSecrets{Reader: mgr.GetAPIReader()}, Status: KubeStatus{Client: mgr.GetClient()}, DeadLetter: h.DeadLetter,
		Attempts: 2, BaseBackoff: 10 * time.Millisecond, StatusInterval: 100 * time.Millisecond, Log: log,
	})
	_ = mgr.Add(ctrlRunnable(h.AM.Run))
	_ = mgr.Add(ctrlRunnable(h.Webhooks.Run))
	inf, err := mgr.GetCache().GetInformer(ctx, &cmkv1.WebHookNotification{})
	if err != nil {
		t.Fatal(err)
	}
	if err := WatchTargets(inf, h.Webhooks); err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	if err := mgr.Add(&EventSource{Clientset: cs, Objects: mgr.GetClient(), Handler: h, Log: log}); err != nil {
		t.Fatal(err)
	}
	mctx, mcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Start(mctx) }()
	t.Cleanup(func() { mcancel(); <-done })
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	// The informers of the event source start with the manager; give them a moment to list.
	time.Sleep(time.Second)

	var acct cmkv1.Account
	if err := c.Get(ctx, types.NamespacedName{Namespace: "acme-ns", Name: "main"}, &acct); err != nil {
		t.Fatal(err)
	}
	emit := func(name, reason, component string) {
		t.Helper()
		now := metav1.Now()
		ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "acme-ns", Name: name},
			InvolvedObject: corev1.ObjectReference{APIVersion: cmkv1.GroupVersion.String(), Kind: "Account", Namespace: "acme-ns", Name: "main", UID: acct.UID},
			Reason:         reason, Message: reason + " for the test", Type: corev1.EventTypeWarning, Source: corev1.EventSource{Component: component},
			FirstTimestamp: now, LastTimestamp: now, Count: 1}
		if _, err := cs.CoreV1().Events("acme-ns").Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	emit("forged", ReasonL1KeyUnreachable, "tenant-script")
	emit("down", ReasonL1KeyUnreachable, "apeiro-cmk")
	waitFor(t, "signed delivery to the owning tenant", 30*time.Second, func() bool { return r.count() == 1 })
	waitFor(t, "alert in alertmanager", 30*time.Second, func() bool {
		got, err := amc.GetAlerts(ctx, `alertname="L1KeyUnreachable"`, `tenant="acme"`, `account="main"`)
		return err == nil && len(got) == 1
	})
	nn := types.NamespacedName{Namespace: "acme-ns", Name: "ops"}
	waitFor(t, "status shows the delivery", 30*time.Second, func() bool {
		var w cmkv1.WebHookNotification
		return c.Get(ctx, nn, &w) == nil && w.Status.Delivered == 1 && w.Status.LastSuccessTime != nil
	})
	if other.count() != 0 || r.stat(&r.unsigned) != 0 || r.stat(&r.badSigs) != 0 {
		t.Fatalf("other tenant got %d, unsigned %d, bad signatures %d", other.count(), r.stat(&r.unsigned), r.stat(&r.badSigs))
	}

	// Live change: the target now names a Secret that does not exist.
	var w cmkv1.WebHookNotification
	if err := c.Get(ctx, nn, &w); err != nil {
		t.Fatal(err)
	}
	w.Spec.SigningSecretRef = &cmkv1.SecretKeySelector{Name: "missing", Key: "key"}
	if err := c.Update(ctx, &w); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	emit("up", ReasonAccountReady, "apeiro-cmk")
	waitFor(t, "status reports the missing secret", 30*time.Second, func() bool {
		var w cmkv1.WebHookNotification
		if c.Get(ctx, nn, &w) != nil {
			return false
		}
		cond := findCond(&w, ConditionSigningSecret)
		return cond != nil && cond.Status == metav1.ConditionFalse && w.Status.ConsecutiveFailures == 1 &&
			strings.Contains(w.Status.LastFailureReason, "not sending unsigned")
	})
	if r.count() != 1 || r.stat(&r.unsigned) != 0 {
		t.Fatalf("receiver got %d deliveries (%d unsigned) after the secret went missing", r.count(), r.stat(&r.unsigned))
	}
	// The AccountReady event resolved the condition in Alertmanager.
	waitFor(t, "resolved in alertmanager", 30*time.Second, func() bool {
		got, err := amc.GetAlerts(ctx, `alertname="L1KeyUnreachable"`, `tenant="acme"`)
		return err == nil && len(got) == 0
	})
}

type ctrlRunnable func(context.Context) error

func (f ctrlRunnable) Start(ctx context.Context) error { return f(ctx) }
