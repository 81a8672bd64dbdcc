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
	"github.com/apeirora/apeiro-cmk/pkg/server"
)

// kcpOptions switch the webhook to the Platform Mesh on kcp: tenants from workspaces, ownership by logical cluster,
// regions and audiences from the mesh configuration in the platform workspace (docs/kcp.md).
type kcpOptions struct {
	kubeconfig        string
	context           string
	inCluster         bool
	tenantsRoot       string
	platformWorkspace string
	meshNamespace     string
	meshName          string
}

func (k *kcpOptions) bind(fs *flag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kcp-kubeconfig", "", "Kubeconfig of a kcp server: serve the Platform Mesh on kcp (tenants from workspaces) instead of a plain Kubernetes cluster.")
	fs.StringVar(&k.context, "kcp-context", "", "With --kcp-kubeconfig: the kubeconfig context (empty: current). Its identity must be allowed to list and watch across all workspaces (/clusters/*).")
	fs.BoolVar(&k.inCluster, "kcp-in-cluster", false, "Like --kcp-kubeconfig, with the in-cluster configuration (the webhook runs in a pod of kcp's hosting cluster).")
	fs.StringVar(&k.tenantsRoot, "kcp-tenants-root", "root", "With kcp: every workspace below this path is a tenant (except the platform workspace).")
	fs.StringVar(&k.platformWorkspace, "kcp-platform-workspace", "root:platform", "With kcp: the workspace holding the Platform Mesh configuration.")
	fs.StringVar(&k.meshNamespace, "kcp-mesh-namespace", "default", "With kcp: namespace of the mesh configuration ConfigMap.")
	fs.StringVar(&k.meshName, "kcp-mesh-name", "platform-mesh", "With kcp: name of the mesh configuration ConfigMap.")
}

func (k *kcpOptions) enabled() bool { return k.kubeconfig != "" || k.inCluster }

// runKCP serves admission from a kcp view: the same handlers and hierarchy model as on plain Kubernetes, fed by a
// multi-cluster watch instead of namespace informers. L1 key probes and the key controllers are not wired in this
// mode yet (the Account reconciler works per cluster).
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
	model := hierarchy.New(hierarchy.Config{MaxDepth: o.maxDepth})
	graph := kcp.NewGraph(kcp.Options{TenantsRoot: o.kcp.tenantsRoot, PlatformWorkspace: o.kcp.platformWorkspace,
		MeshNamespace: o.kcp.meshNamespace, MeshName: o.kcp.meshName}, model)
	watcher := kcp.NewWatcher(base, graph, kcp.WatcherOptions{ReportErrors: true, Log: ctrl.Log.WithName("kcp")})

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	minTLS := uint16(tls.VersionTLS12)
	if o.tls13 {
		minTLS = tls.VersionTLS13
	}
	whServer := server.New(server.Options{Host: o.webhookHost, Port: o.webhookPort, CertDir: o.certDir, MinTLSVersion: minTLS, ClientCAFile: o.clientCAFile})
	// The manager only hosts the webhook server, metrics and probes here; it starts no caches.
	mgr, err := ctrl.NewManager(kcp.ForCluster(base, o.kcp.platformWorkspace), ctrl.Options{
		Scheme:                 scheme,
		WebhookServer:          whServer,
		Metrics:                metricsserver.Options{BindAddress: o.metricsAddr, TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = minTLS }}},
		HealthProbeBindAddress: o.probeAddr,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	var perms admission.Permissions = admission.RBACDelegated{}
	if o.tenantGroups != "" {
		perms = admission.TenantGroups{Prefix: o.tenantGroups, Bypass: splitList(o.bypassGroups), BypassUsers: splitList(o.bypassUsers)}
	}
	h := admission.NewHandlers(admission.Handlers{
		// No live reads: the kcp view is the only source, and its watch is at most an event behind.
		Dir:          &admission.Directory{Model: model, MaxDepth: o.maxDepth, Source: graph},
		Regions:      kcp.MeshPolicy{Graph: graph},
		Permissions:  perms,
		ProbeTimeout: o.probeTimeout,
		TrustDomains: splitList(o.trustDomains),
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
		"platformWorkspace", graph.Options().PlatformWorkspace)
	return mgr.Start(ctx)
}
