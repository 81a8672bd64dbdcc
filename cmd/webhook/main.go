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
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
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
	bypassUsers     string
	leaderElect     bool
	leaderElectNS   string
	kcp             kcpOptions
	kc              keychainOptions
	id              identityOptions
	certRenew       certRenewOptions
	alerts          alertOptions
	inUse           inUseOptions
	shutdown        shutdownOptions // cmd/webhook/shutdown.go
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
	fs.StringVar(&o.keystorePlugins, "keystore-plugins", "", "Account keystore type to keystore operations plugin name, comma-separated (e.g. local=LOCAL,aws=AWS); Accounts of mapped keystores get their L1 key probed (docs/keychain.md). Empty: every operations plugin of the profile whose lower-cased name is a keystore type; \"none\": no probes.")
	o.kc.bind(fs)
	o.kcp.bind(fs)
	o.id.bind(fs)
	o.certRenew.bind(fs)
	o.alerts.bind(fs)
	o.inUse.bind(fs)
	o.shutdown.bind(fs)
	fs.StringVar(&o.trustDomains, "trust-domains", "", "Comma-separated SPIFFE trust domains allowed in workload identities (empty: any).")
	fs.DurationVar(&o.probeTimeout, "key-probe-timeout", admission.DefaultProbeTimeout, "Budget of an L1 key probe on the admission path; slower keystores produce a warning, not a denial.")
	fs.Int64Var(&o.maxBodyBytes, "max-request-bytes", admission.DefaultMaxBodyBytes, "Largest accepted AdmissionReview body.")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader for the Account status reconciler (set with more than one replica; admission is served by every replica).")
	fs.StringVar(&o.leaderElectNS, "leader-election-namespace", "", "Namespace of the leader election lease (default: the pod's namespace).")
	fs.StringVar(&o.bypassGroups, "permission-bypass-groups", strings.Join(admission.DefaultBypassGroups, ","), "Groups exempt from the tenant-admin requirement (cluster and platform admins). Never name a whole service-account group.")
	fs.StringVar(&o.bypassUsers, "permission-bypass-users", strings.Join(admission.DefaultBypassUsers, ","), "Users exempt from the tenant-admin requirement (the named kube-controller-manager loops that delete objects for users).")
	fs.StringVar(&o.tenantGroups, "tenant-admin-group-prefix", admission.DefaultTenantAdminGroupPrefix, "Writes need group <prefix><tenant>:admin (or a bypass group or user); empty switches the check off and leaves authorization to RBAC alone.")
}

func main() {
	var o options
	o.bind(flag.CommandLine)
	zopts := zap.Options{Development: false, TimeEncoder: zapcore.ISO8601TimeEncoder}
	zopts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zopts)))
	if err := run(o.shutdown.signalContext(), o); err != nil {
		ctrl.Log.Error(err, "webhook server failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if o.kcp.enabled() {
		return runKCP(ctx, o) // cmd/webhook/kcp.go
	}
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
	whServer := server.New(server.Options{Host: o.webhookHost, Port: o.webhookPort, CertDir: o.certDir, MinTLSVersion: minTLS, ClientCAFile: o.clientCAFile,
		Draining: o.shutdown.isDraining, ShutdownTimeout: o.shutdown.drainTimeout()}) // cmd/webhook/shutdown.go
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		WebhookServer:           whServer,
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr, TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = minTLS }}},
		HealthProbeBindAddress:  o.probeAddr,
		PprofBindAddress:        pprofAddress(), // cmd/webhook/perf.go; empty: off
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "apeiro-cmk-account-status",
		LeaderElectionNamespace: o.leaderElectNS,
		// Release the lease on shutdown so the next leader takes over without waiting for expiry.
		LeaderElectionReleaseOnCancel: true,
		// Each kind is cut down to what the checks read as it enters the cache (memory is bounded per object).
		Cache: admission.CacheOptions(),
		// Accounts are cached metadata only; typed reads of one Account go to the API server.
		Client: admission.ClientOptions(),
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	live, err := liveReader(mgr.GetAPIReader(), o.inUse, o.inUse.enabled) // cmd/webhook/perf.go
	if err != nil {
		return err
	}
	dir := &admission.Directory{Model: hierarchy.New(hierarchy.Config{MaxDepth: o.maxDepth}), Cached: mgr.GetClient(), Live: live, MaxDepth: o.maxDepth}
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
		perms = admission.TenantGroups{Prefix: o.tenantGroups, Bypass: splitList(o.bypassGroups), BypassUsers: splitList(o.bypassUsers)}
	}
	keys, err := setupKeychain(ctx, mgr, o, plugins)
	if err != nil {
		return err
	}
	h := admission.NewHandlers(admission.Handlers{
		Dir:          dir,
		Regions:      regions,
		Keys:         keys.Admission,
		Permissions:  perms,
		ProbeTimeout: o.probeTimeout,
		TrustDomains: splitList(o.trustDomains),
	})
	if err := setupInUse(mgr, o, dir, h); err != nil { // cmd/webhook/inuse.go
		return err
	}
	admission.Register(whServer, h, admission.Limits{MaxBodyBytes: o.maxBodyBytes})
	if err := setupIdentity(ctx, mgr, whServer, o, keys.Chain); err != nil { // cmd/webhook/identity.go
		return err
	}
	if err := setupCertRenewal(ctx, mgr, o); err != nil { // cmd/webhook/certs.go
		return err
	}
	if err := setupAlerts(ctx, mgr, o); err != nil { // cmd/webhook/alerts.go
		return err
	}
	// The manager adds its webhook server to the runnables only when it is first asked for it.
	_ = mgr.GetWebhookServer()
	if err := setupKeyControllers(mgr, o, keys); err != nil {
		return err
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
	log.Info("starting", "webhookPort", o.webhookPort, "maxDepth", o.maxDepth, "plugins", plugins.describe(), "keystores", keys.describe())
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
