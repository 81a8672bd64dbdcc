package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
)

// Options of Up.
type Options struct {
	// KubeBin holds etcd, kube-apiserver and kubectl. Required.
	KubeBin string
	// WebhookBin is the webhook binary (bin/webhook). Required.
	WebhookBin string
	// Root is the repository root: deploy/base and deploy/base/crds are read from it. Required.
	Root string
	// WorkDir receives the control plane's data, certificates, logs and kubeconfig, and the webhook's log and
	// serving certificate. Created if missing; the caller removes it.
	WorkDir string
	// WebhookArgs are appended to the webhook's flags (for example --max-depth=4).
	WebhookArgs []string
	// WebhookEnv entries (KEY=value) are added to the webhook's environment. The embedded profile's local
	// keystore directory (APEIRO_LOCAL_KEYSTORE_DIR) defaults to WorkDir/keystore-local, so nothing is written
	// outside WorkDir.
	WebhookEnv []string
	// Progress receives one line per step; nil discards.
	Progress io.Writer
	// StartTimeout bounds each readiness wait (default 90s).
	StartTimeout time.Duration
	// StopGrace is the SIGTERM→SIGKILL grace for every process (default 10s).
	StopGrace time.Duration
	// APIServerArgs are appended to kube-apiserver's flags.
	APIServerArgs []string
	// TokenReviewWebhook makes the API server authenticate bearer tokens through the webhook's /tokenreview
	// (start the webhook with --identity-config); the webhook's port and CA are then fixed up front
	// (tokenwebhook.go).
	TokenReviewWebhook bool
}

// Stack is a running control plane with the webhook registered.
type Stack struct {
	opts Options

	ControlPlane *controlplane.ControlPlane
	Webhook      *controlplane.Process
	// WebhookURL is https://127.0.0.1:<port>, the base of every webhook path.
	WebhookURL  string
	WebhookPort int
	MetricsAddr string
	HealthAddr  string
	// WebhookCAPEM is the CA in the webhook configurations' caBundle.
	WebhookCAPEM []byte
	// Client is an admin client whose scheme knows the core, apiextensions, admissionregistration and
	// cmk.apeiro.io types.
	Client client.Client
	Scheme *runtime.Scheme
	// WebhookConfigSource says where the webhook configurations were read from.
	WebhookConfigSource string
	// Timings of the bring-up steps, in order.
	Timings []Timing

	webhookConfigs []client.Object
	// baseArgs/baseEnv: the webhook's settings before the first RestartWebhook (restart.go).
	baseArgs, baseEnv []string
	// tw is set with Options.TokenReviewWebhook (tokenwebhook.go).
	tw *tokenWebhook
}

// Timing of one bring-up step.
type Timing struct {
	Step     string
	Duration time.Duration
}

// NewScheme returns a scheme with the types the stack and its callers use.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, cmkv1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("building scheme: %w", err)
		}
	}
	return s, nil
}

// Up brings the stack up. On error everything already started is stopped again.
func Up(ctx context.Context, opts Options) (_ *Stack, err error) {
	if opts.KubeBin == "" || opts.WebhookBin == "" || opts.Root == "" || opts.WorkDir == "" {
		return nil, errors.New("devstack: KubeBin, WebhookBin, Root and WorkDir are required")
	}
	if _, err := os.Stat(opts.WebhookBin); err != nil {
		return nil, fmt.Errorf("devstack: webhook binary: %w (build it with `go build -o bin/webhook ./cmd/webhook`)", err)
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 90 * time.Second
	}
	if opts.StopGrace == 0 {
		opts.StopGrace = 10 * time.Second
	}
	s := &Stack{opts: opts}
	defer func() {
		if err != nil {
			_ = s.Down()
		}
	}()
	if s.Scheme, err = NewScheme(); err != nil {
		return nil, err
	}
	step := time.Now()
	mark := func(name string) {
		d := time.Since(step)
		s.Timings = append(s.Timings, Timing{name, d})
		fmt.Fprintf(opts.Progress, "devstack: %s (%.1fs)\n", name, d.Seconds())
		step = time.Now()
	}

	twArgs, err := s.prepareTokenWebhook()
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	s.ControlPlane, err = controlplane.Start(ctx, controlplane.Config{
		BinDir: opts.KubeBin, WorkDir: opts.WorkDir, StartTimeout: opts.StartTimeout, StopGrace: opts.StopGrace,
		Progress: opts.Progress, ExtraAPIServerArgs: append(append([]string{}, opts.APIServerArgs...), twArgs...),
	})
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	mark("control plane ready")
	if s.Client, err = client.New(s.ControlPlane.RESTConfig(), client.Options{Scheme: s.Scheme}); err != nil {
		return nil, fmt.Errorf("devstack: client: %w", err)
	}

	// CRDs first: the webhook's informers list tenants, accounts and keys at start and would never sync without them.
	crdDir := filepath.Join(opts.Root, "deploy", "base", "crds")
	if err := InstallCRDs(ctx, s.Client, crdDir, opts.StartTimeout); err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	mark("CRDs established from " + rel(opts.Root, crdDir))

	// The in-process ValidatingAdmissionPolicies of deploy/base, so the stack enforces what a cluster does.
	policies, err := InstallAdmissionPolicies(ctx, s.Client, filepath.Join(opts.Root, "deploy", "base"))
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	mark(fmt.Sprintf("%d admission policies and bindings from deploy/base installed", policies))

	if err := s.startWebhook(ctx); err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	mark("webhook ready at " + s.WebhookURL)

	s.webhookConfigs, s.WebhookConfigSource, err = RenderWebhookConfigurations(filepath.Join(opts.Root, "deploy", "base"), s.WebhookURL, s.WebhookCAPEM)
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	if err := s.InstallWebhookConfigurations(ctx); err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	mark(fmt.Sprintf("webhook configurations from %s registered and answering", rel(opts.Root, s.WebhookConfigSource)))
	return s, nil
}

func rel(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

// startWebhook writes a serving certificate for 127.0.0.1, starts the webhook binary and waits for /readyz.
func (s *Stack) startWebhook(ctx context.Context) error {
	certDir := filepath.Join(s.opts.WorkDir, "webhook-certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return err
	}
	ca, err := s.webhookCA()
	if err != nil {
		return err
	}
	kp, err := ca.IssueServing("apeiro-cmk-webhook", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}, 7*24*time.Hour)
	if err != nil {
		return err
	}
	if err := kp.WriteFiles(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(certDir, "ca.crt"), ca.CertPEM, 0o644); err != nil {
		return err
	}
	s.WebhookCAPEM = ca.CertPEM

	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		ports, err := s.webhookPorts()
		if err != nil {
			return err
		}
		s.WebhookPort = ports[0]
		s.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
		s.HealthAddr = fmt.Sprintf("127.0.0.1:%d", ports[2])
		s.WebhookURL = fmt.Sprintf("https://127.0.0.1:%d", s.WebhookPort)
		args := append([]string{
			"--kubeconfig=" + s.ControlPlane.KubeconfigPath,
			"--cert-dir=" + certDir,
			"--webhook-host=127.0.0.1",
			fmt.Sprintf("--webhook-port=%d", s.WebhookPort),
			"--metrics-bind-address=" + s.MetricsAddr,
			"--health-probe-bind-address=" + s.HealthAddr,
			// Regions and audiences come from the profile's SIS plugin, as in deploy/base.
			"--region-source=sis",
			// No Service in front keeps sending it traffic when the stack stops it: stop without a delay.
			"--shutdown-delay=0",
		}, s.opts.WebhookArgs...)
		env := append([]string{"APEIRO_LOCAL_KEYSTORE_DIR=" + filepath.Join(s.opts.WorkDir, "keystore-local")}, s.opts.WebhookEnv...)
		s.Webhook, err = controlplane.StartProcess("webhook", s.opts.WebhookBin, args, filepath.Join(s.opts.WorkDir, "webhook.log"), env...)
		if err != nil {
			return err
		}
		hc := &http.Client{Timeout: 2 * time.Second}
		lastErr = controlplane.WaitReady(ctx, s.opts.StartTimeout, s.Webhook, func(ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.HealthAddr+"/readyz", nil)
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
				return fmt.Errorf("/readyz: %s: %s", resp.Status, strings.TrimSpace(string(b)))
			}
			return nil
		})
		if lastErr == nil {
			return nil
		}
		_ = s.Webhook.Stop(s.opts.StopGrace)
		if !strings.Contains(s.Webhook.LogTail(40), "address already in use") {
			break
		}
	}
	return fmt.Errorf("waiting for the webhook: %w", lastErr)
}

// InstallWebhookConfigurations creates (or replaces) the webhook configurations and waits until the webhook
// answers a probe request through the API server.
func (s *Stack) InstallWebhookConfigurations(ctx context.Context) error {
	for _, o := range s.webhookConfigs {
		if err := Apply(ctx, s.Client, o.DeepCopyObject().(client.Object)); err != nil {
			return fmt.Errorf("registering webhook configuration: %w", err)
		}
	}
	return s.WaitWebhookAnswering(ctx)
}

// RemoveWebhookConfigurations deletes the webhook configurations, switching the webhook off (CEL rules and the
// schema still apply), and waits until the API server no longer calls it.
func (s *Stack) RemoveWebhookConfigurations(ctx context.Context) error {
	for _, o := range s.webhookConfigs {
		obj := o.DeepCopyObject().(client.Object)
		if err := s.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting %T %s: %w", o, o.GetName(), err)
		}
	}
	// The API server's webhook registry is fed by an informer: wait until the probe is admitted.
	return poll(ctx, s.opts.StartTimeout, func() error {
		err := s.probe(ctx)
		if err == nil {
			return nil
		}
		return fmt.Errorf("webhook still consulted: %w", err)
	})
}

// WebhookConfigurations returns copies of the rendered configurations.
func (s *Stack) WebhookConfigurations() []client.Object {
	out := make([]client.Object, 0, len(s.webhookConfigs))
	for _, o := range s.webhookConfigs {
		out = append(out, o.DeepCopyObject().(client.Object))
	}
	return out
}

// probeTenant is valid for the CRD schema and CEL rules but names a parent that cannot exist, so only the
// validating webhook can deny it (H-PARENT-UNKNOWN).
func probeTenant() *cmkv1alpha1.Tenant {
	return &cmkv1alpha1.Tenant{
		ObjectMeta: metav1.ObjectMeta{Name: "devstack-probe"},
		Spec: cmkv1alpha1.TenantSpec{
			Type: cmkv1alpha1.TenantTypeNested, Parent: "devstack-probe-parent-that-does-not-exist", Region: "probe",
		},
	}
}

// probe sends a server-side dry-run create that only the webhook denies. nil means it was admitted.
func (s *Stack) probe(ctx context.Context) error {
	return s.Client.Create(ctx, probeTenant(), client.DryRunAll)
}

// WaitWebhookAnswering waits until the probe is denied by the webhook itself (not merely refused because the
// webhook could not be called).
func (s *Stack) WaitWebhookAnswering(ctx context.Context) error {
	return poll(ctx, s.opts.StartTimeout, func() error {
		err := s.probe(ctx)
		if err == nil {
			return errors.New("probe admitted: the webhook is not registered yet")
		}
		if IsWebhookDenial(err) {
			return nil
		}
		if exited, _ := s.Webhook.Exited(); exited {
			return stopPolling{s.Webhook.ExitError()}
		}
		return err
	})
}

// IsWebhookDenial reports whether err is an admission webhook's denial (as opposed to a failure to call it).
func IsWebhookDenial(err error) bool {
	return err != nil && strings.Contains(err.Error(), "admission webhook") && strings.Contains(err.Error(), "denied the request")
}

type stopPolling struct{ error }

func poll(ctx context.Context, timeout time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		last = f()
		if last == nil {
			return nil
		}
		var sp stopPolling
		if errors.As(last, &sp) {
			return sp.error
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %s: %w", timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Apply creates obj or, when it exists, replaces it (keeping the stored resourceVersion).
func Apply(ctx context.Context, c client.Client, obj client.Object) error {
	err := c.Create(ctx, obj)
	if err == nil || !apierrors.IsAlreadyExists(err) {
		return err
	}
	existing := obj.DeepCopyObject().(client.Object)
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), existing); err != nil {
		return err
	}
	obj.SetResourceVersion(existing.GetResourceVersion())
	return c.Update(ctx, obj)
}

// InstallCRDs applies every CustomResourceDefinition in dir (*.yaml) and waits until each is Established.
func InstallCRDs(ctx context.Context, c client.Client, dir string, timeout time.Duration) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		docs, err := SplitYAML(f)
		if err != nil {
			return err
		}
		for _, d := range docs {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := yaml.Unmarshal(d, crd); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				continue
			}
			crds = append(crds, crd)
		}
	}
	if len(crds) == 0 {
		return fmt.Errorf("no CustomResourceDefinitions in %s (run `make generate`)", dir)
	}
	for _, crd := range crds {
		if err := Apply(ctx, c, crd.DeepCopy()); err != nil {
			return fmt.Errorf("installing CRD %s: %w", crd.Name, err)
		}
	}
	for _, crd := range crds {
		err := poll(ctx, timeout, func() error {
			got := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKey{Name: crd.Name}, got); err != nil {
				return err
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
			}
			return fmt.Errorf("CRD %s not Established yet", crd.Name)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Kubectl is the kubectl built next to the control plane (not the one on PATH).
func (s *Stack) Kubectl() string { return s.ControlPlane.Kubectl() }

// KubeconfigPath of the admin kubeconfig.
func (s *Stack) KubeconfigPath() string { return s.ControlPlane.KubeconfigPath }

// Down stops the webhook, then the control plane. Safe on a partly started stack and when called twice.
func (s *Stack) Down() error {
	var errs []error
	if s.Webhook != nil {
		if err := s.Webhook.Stop(s.opts.StopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	if s.ControlPlane != nil {
		if err := s.ControlPlane.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
