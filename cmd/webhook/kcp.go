package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net/http"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpctrl"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/server"
)

// kcpOptions switch the webhook to the Platform Mesh on kcp: tenants from workspaces, ownership by logical cluster,
// regions and audiences from the mesh configuration in the platform workspace (docs/kcp.md).
type kcpOptions struct {
	kubeconfig        string
	context           string
	watchContext      string // cmd/webhook/kcpwatch.go
	inCluster         bool
	tenantsRoot       string
	platformWorkspace string
	meshNamespace     string
	meshName          string
}

func (k *kcpOptions) bind(fs *flag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kcp-kubeconfig", "", "Kubeconfig of a kcp server: serve the Platform Mesh on kcp (tenants from workspaces) instead of a plain Kubernetes cluster.")
	fs.StringVar(&k.context, "kcp-context", "", "With --kcp-kubeconfig: the kubeconfig context (empty: current). Its identity must be allowed to list and watch across all workspaces (/clusters/*) unless --kcp-watch-context names the identity for that (deploy/kcp then grants everything else).")
	bindWatchContext(fs, &k.watchContext) // cmd/webhook/kcpwatch.go
	fs.BoolVar(&k.inCluster, "kcp-in-cluster", false, "Like --kcp-kubeconfig, with the in-cluster configuration (the webhook runs in a pod of kcp's hosting cluster).")
	fs.StringVar(&k.tenantsRoot, "kcp-tenants-root", "root", "With kcp: every workspace below this path is a tenant (except the platform workspace).")
	fs.StringVar(&k.platformWorkspace, "kcp-platform-workspace", "root:platform", "With kcp: the workspace holding the Platform Mesh configuration.")
	fs.StringVar(&k.meshNamespace, "kcp-mesh-namespace", "default", "With kcp: namespace of the mesh configuration ConfigMap.")
	fs.StringVar(&k.meshName, "kcp-mesh-name", "platform-mesh", "With kcp: name of the mesh configuration ConfigMap.")
}

func (k *kcpOptions) enabled() bool { return k.kubeconfig != "" || k.inCluster }

// runKCP serves admission from a kcp view: the same handlers and hierarchy model as on plain Kubernetes, fed by a
// multi-cluster watch instead of namespace informers, with the same key chain: L1 key probes on Account admission,
// and the Account / ServiceEncryptionKey controllers for every workspace, driven by that one watch (pkg/kcp/kcpctrl).
func runKCP(ctx context.Context, o options) error {
	log := ctrl.Log.WithName("setup")
	path := o.kcp.kubeconfig
	if o.kcp.inCluster {
		path = ""
	}
	base, err := kcp.LoadConfigContext(path, o.kcp.context)
	if err != nil {
		return err
	}
	watch, err := o.kcp.watchConfig(base) // the cross-workspace list/watch identity (cmd/webhook/kcpwatch.go)
	if err != nil {
		return err
	}
	model := hierarchy.New(hierarchy.Config{MaxDepth: o.maxDepth})
	graph := kcp.NewGraph(kcp.Options{TenantsRoot: o.kcp.tenantsRoot, PlatformWorkspace: o.kcp.platformWorkspace,
		MeshNamespace: o.kcp.meshNamespace, MeshName: o.kcp.meshName}, model)
	wopts := kcp.WatcherOptions{ReportErrors: true, Log: ctrl.Log.WithName("kcp")}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	minTLS := uint16(tls.VersionTLS12)
	if o.tls13 {
		minTLS = tls.VersionTLS13
	}
	whServer := server.New(server.Options{Host: o.webhookHost, Port: o.webhookPort, CertDir: o.certDir, MinTLSVersion: minTLS, ClientCAFile: o.clientCAFile,
		Draining: o.shutdown.isDraining, ShutdownTimeout: o.shutdown.drainTimeout()}) // cmd/webhook/shutdown.go
	// The manager only hosts the webhook server, metrics and probes here; it starts no caches.
	mgr, err := ctrl.NewManager(kcp.ForCluster(base, o.kcp.platformWorkspace), ctrl.Options{
		Scheme:                 scheme,
		WebhookServer:          whServer,
		Metrics:                metricsserver.Options{BindAddress: o.metricsAddr, TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = minTLS }}},
		HealthProbeBindAddress: o.probeAddr,
		PprofBindAddress:       pprofAddress(),
		// The lease lives in the platform workspace; only the leader runs the controllers.
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "apeiro-cmk-account-status",
		LeaderElectionNamespace:       o.leaderElectNS,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	plugins, err := loadPlugins(ctx, o)
	if err != nil {
		return err
	}
	defer plugins.Close()
	keys, err := setupKeychain(ctx, mgr, o, plugins) // cmd/webhook/keychain.go
	if err != nil {
		return err
	}
	// The chain's own reads (by namespace/name) cannot say which workspace they mean; nothing in kcp mode needs
	// them, and they must not silently read the platform workspace.
	keys.Chain.Reader = kcp.NoClusterReader{}
	ctrls, err := kcpctrl.New(kcpctrl.Options{Config: base, Graph: graph, Model: model, Chain: keys.Chain,
		Prober: prober(keys), AccountInterval: o.kc.probeInterval, Log: ctrl.Log.WithName("kcp-controllers")})
	if err != nil {
		return err
	}
	wopts.OnAccount, wopts.OnKey = ctrls.OnAccount, ctrls.OnKey
	inUseFinalizer, err := setupKCPInUse(mgr, o, base, graph, model, &wopts) // cmd/webhook/kcpinuse.go
	if err != nil {
		return err
	}
	kcpLive, err := kcp.NewLiveReader(base, graph.Options())
	if err != nil {
		return err
	}
	live, err := liveReader(kcpLive, o.inUse, inUseFinalizer != "") // cmd/webhook/perf.go
	if err != nil {
		return err
	}
	watcher := kcp.NewWatcher(watch, graph, wopts)
	if err := mgr.Add(ctrls); err != nil {
		return err
	}
	// The alert handler, across workspaces (cmd/webhook/kcpalerts.go).
	if err := setupKCPAlerts(mgr, o, base, watch, graph, watcher.HasSynced); err != nil {
		return err
	}
	var perms admission.Permissions = admission.RBACDelegated{}
	if o.tenantGroups != "" {
		perms = admission.TenantGroups{Prefix: o.tenantGroups, Bypass: splitList(o.bypassGroups), BypassUsers: splitList(o.bypassUsers)}
	}
	h := admission.NewHandlers(admission.Handlers{
		// Point reads go live on a model miss and for terminating checks (the workspace, or the Account in its
		// logical cluster); lists come from the watch (pkg/kcp LiveReader).
		Dir:            &admission.Directory{Model: model, MaxDepth: o.maxDepth, Source: graph, Live: live},
		Regions:        kcp.MeshPolicy{Graph: graph},
		Keys:           keys.Admission,
		Permissions:    perms,
		ProbeTimeout:   o.probeTimeout,
		TrustDomains:   splitList(o.trustDomains),
		InUseFinalizer: inUseFinalizer,
	})
	admission.Register(whServer, h, admission.Limits{MaxBodyBytes: o.maxBodyBytes})
	_ = mgr.GetWebhookServer()
	if err := watcher.Start(ctx); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", whServer.StartedChecker()); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("kcp", func(*http.Request) error {
		if !watcher.HasSynced() {
			return fmt.Errorf("the kcp view has not loaded every workspace, account and key yet")
		}
		return nil
	}); err != nil {
		return err
	}
	log.Info("starting on kcp", "webhookPort", o.webhookPort, "server", base.Host, "tenantsRoot", graph.Options().TenantsRoot,
		"platformWorkspace", graph.Options().PlatformWorkspace, "plugins", plugins.describe(), "keystores", keys.describe())
	return mgr.Start(ctx)
}

// prober is the key chain's prober as an interface value (nil when no keystore is mapped, never a typed nil).
func prober(k *keychainSetup) keychain.Prober {
	if k.Prober == nil {
		return nil
	}
	return k.Prober
}
