// Command webhook is apeiro-cmk's admission webhook server: it validates and mutates Tenant, Account,
// ServiceEncryptionKey and WebHookNotification writes before the API server persists them, keeps the tenant
// hierarchy index current from informers, and loads the OpenKCM plugins of a profile through the plugin-sdk catalog.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/controllers/account"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/server"
)

type options struct {
	webhookHost     string
	webhookPort     int
	certDir         string
	tls13           bool
	clientCAFile    string
	metricsAddr     string
	probeAddr       string
	profile         string
	maxDepth        int
	allowedRegions  string
	regionSource    string
	keystorePlugins string
	trustDomains    string
	probeTimeout    time.Duration
	maxBodyBytes    int64
	tenantGroups    string
	bypassGroups    string
	leaderElect     bool
	leaderElectNS   string
}

func (o *options) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.webhookHost, "webhook-host", "", "Address to serve webhooks on (empty: all interfaces).")
	fs.IntVar(&o.webhookPort, "webhook-port", 9443, "Port to serve webhooks on.")
	fs.StringVar(&o.certDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "Directory with tls.crt and tls.key; reloaded when they change.")
	fs.BoolVar(&o.tls13, "tls13-only", false, "Require TLS 1.3 (default minimum is TLS 1.2).")
	fs.StringVar(&o.clientCAFile, "client-ca-file", "", "PEM CA bundle; when set, clients (the API server) must present a certificate it signed. Off by default.")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Prometheus metrics address; \"0\" disables.")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz.")
	fs.StringVar(&o.profile, "profile", "", "Plugins profile (CMK plugins: format). Empty: the embedded apeiro-profile with builtin plugins.")
	fs.IntVar(&o.maxDepth, "max-depth", hierarchy.DefaultMaxDepth, "Maximum tenant nesting depth (a Root is depth 1).")
	fs.StringVar(&o.regionSource, "region-source", "static", "Where the Platform Mesh region/audience policy comes from: static (--allowed-regions) or sis (the profile's SystemInformationService plugin, resource type \"region\").")
	fs.StringVar(&o.allowedRegions, "allowed-regions", "", "With --region-source=static: comma-separated regions, each optionally with audiences as region=aud1|aud2. Empty: any region.")
	fs.StringVar(&o.keystorePlugins, "keystore-plugins", "", "Account keystore type to keystore operations plugin name, comma-separated (e.g. local=LOCAL,aws=AWS); Accounts of mapped keystores get their L1 key probed on create. Empty: no probe at admission.")
	fs.StringVar(&o.trustDomains, "trust-domains", "", "Comma-separated SPIFFE trust domains allowed in workload identities (empty: any).")
	fs.DurationVar(&o.probeTimeout, "key-probe-timeout", admission.DefaultProbeTimeout, "Budget of an L1 key probe on the admission path; slower keystores produce a warning, not a denial.")
	fs.Int64Var(&o.maxBodyBytes, "max-request-bytes", admission.DefaultMaxBodyBytes, "Largest accepted AdmissionReview body.")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader for the Account status reconciler (set with more than one replica; admission is served by every replica).")
	fs.StringVar(&o.leaderElectNS, "leader-election-namespace", "", "Namespace of the leader election lease (default: the pod's namespace).")
	fs.StringVar(&o.bypassGroups, "permission-bypass-groups", "system:masters,system:serviceaccounts:kube-system", "With --tenant-admin-group-prefix: groups exempt from the tenant-admin requirement (cluster admins, and kube-system controllers such as the namespace and garbage collectors).")
	fs.StringVar(&o.tenantGroups, "tenant-admin-group-prefix", "", "When set, writes need group <prefix><tenant>:admin (or a --permission-bypass-groups group); empty leaves authorization to RBAC.")
}

func main() {
	var o options
	o.bind(flag.CommandLine)
	zopts := zap.Options{Development: false, TimeEncoder: zapcore.ISO8601TimeEncoder}
	zopts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zopts)))
	if err := run(ctrl.SetupSignalHandler(), o); err != nil {
		ctrl.Log.Error(err, "webhook server failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	log := ctrl.Log.WithName("setup")
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := cmkv1.AddToScheme(scheme); err != nil {
		return err
	}
	minTLS := uint16(tls.VersionTLS12)
	if o.tls13 {
		minTLS = tls.VersionTLS13
	}
	whServer := server.New(server.Options{Host: o.webhookHost, Port: o.webhookPort, CertDir: o.certDir, MinTLSVersion: minTLS, ClientCAFile: o.clientCAFile})
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		WebhookServer:           whServer,
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr, TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = minTLS }}},
		HealthProbeBindAddress:  o.probeAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "apeiro-cmk-account-status",
		LeaderElectionNamespace: o.leaderElectNS,
		// Release the lease on shutdown so the next leader takes over without waiting for expiry.
		LeaderElectionReleaseOnCancel: true,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			// Only the label the webhook needs matters; strip managed fields to keep the cache small.
			&corev1.Namespace{}: {},
		}, DefaultTransform: cache.TransformStripManagedFields()},
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	dir := &admission.Directory{Model: hierarchy.New(hierarchy.Config{MaxDepth: o.maxDepth}), Cached: mgr.GetClient(), Live: mgr.GetAPIReader(), MaxDepth: o.maxDepth}
	modelSynced, err := admission.Sync(ctx, mgr.GetCache(), dir)
	if err != nil {
		return err
	}
	plugins, err := loadPlugins(ctx, o)
	if err != nil {
		return err
	}
	defer plugins.Close()

	regions, err := regionPolicy(o.allowedRegions, o.regionSource, plugins)
	if err != nil {
		return err
	}
	var perms admission.Permissions = admission.RBACDelegated{}
	if o.tenantGroups != "" {
		perms = admission.TenantGroups{Prefix: o.tenantGroups, Bypass: splitList(o.bypassGroups)}
	}
	h := admission.NewHandlers(admission.Handlers{
		Dir:          dir,
		Regions:      regions,
		Keys:         plugins.keyProber(parseMap(o.keystorePlugins)),
		Permissions:  perms,
		ProbeTimeout: o.probeTimeout,
		TrustDomains: splitList(o.trustDomains),
	})
	admission.Register(whServer, h, admission.Limits{MaxBodyBytes: o.maxBodyBytes})
	// The manager adds its webhook server to the runnables only when it is first asked for it.
	_ = mgr.GetWebhookServer()
	if err := (&account.Reconciler{Client: mgr.GetClient(), Prober: h.Keys, Recorder: mgr.GetEventRecorder("apeiro-cmk")}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the account status reconciler: %w", err)
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	// Ready once the TLS listener is up and the hierarchy index has synced; never gated on backends.
	if err := mgr.AddReadyzCheck("webhook", whServer.StartedChecker()); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("hierarchy", func(*http.Request) error {
		if !modelSynced() {
			return fmt.Errorf("the hierarchy index has not loaded every tenant, account and key yet")
		}
		return nil
	}); err != nil {
		return err
	}
	log.Info("starting", "webhookPort", o.webhookPort, "maxDepth", o.maxDepth, "plugins", plugins.describe())
	return mgr.Start(ctx)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseMap parses "a=b,c=d".
func parseMap(s string) map[string]string {
	m := map[string]string{}
	for _, p := range splitList(s) {
		k, v, _ := strings.Cut(p, "=")
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m
}
