package main

import (
	"context"
	"flag"
	"fmt"

	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/apeirora/apeiro-cmk/pkg/certrenew"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/certmanager"
)

// certRenewOptions are the flags of the client certificate renewal loop (docs/certificates.md).
type certRenewOptions struct {
	config string
}

func (c *certRenewOptions) bind(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "cert-renew-config", "", "Renewal loop YAML (pkg/certrenew.Config): keeps the Crypto (Manager) / Crypto (Migrate) client certificates issued by cert-manager and renewed at 2/3 of their lifetime, in Secrets or files. Runs on the elected leader. Empty: off.")
}

// setupCertRenewal adds the renewal loop to the manager. The issuer is the cert-manager plugin used in-process; it
// reaches the API server only when a certificate is due, so start-up never waits on cert-manager.
func setupCertRenewal(ctx context.Context, mgr manager.Manager, o options) error {
	if o.certRenew.config == "" {
		return nil
	}
	log := ctrl.Log.WithName("certrenew")
	cfg, err := certrenew.LoadConfig(o.certRenew.config)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("certrenew: %w", err)
	}
	targets, err := cfg.BuildTargets(cs)
	if err != nil {
		return err
	}
	issuer := certmanager.New(certmanager.WithRESTConfig(mgr.GetConfig()))
	if _, err := issuer.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: cfg.Issuer}); err != nil {
		return fmt.Errorf("certrenew: issuer: %w", err)
	}
	if issuer.TrustDomain() != cfg.TrustDomain {
		return fmt.Errorf("certrenew: trustDomain %q differs from the issuer's %q", cfg.TrustDomain, issuer.TrustDomain())
	}
	m, err := certrenew.NewMetrics(metrics.Registry)
	if err != nil {
		return err
	}
	r := &certrenew.Renewer{Issuer: issuer, Targets: targets, Metrics: m, Events: certrenew.NewEventSink(cs, cfg.EventNamespace),
		Log: func(msg string, kv ...any) { log.Info(msg, kv...) }}
	// A manager.RunnableFunc needs leader election, so one replica renews.
	return mgr.Add(manager.RunnableFunc(r.Run))
}
