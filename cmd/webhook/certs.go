package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/apeirora/apeiro-cmk/pkg/certrenew"
	"github.com/apeirora/apeiro-cmk/pkg/identity"
	"github.com/apeirora/apeiro-cmk/pkg/mtls"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/certmanager"
)

// certRenewOptions are the flags of the client certificate renewal loop (docs/certificates.md).
type certRenewOptions struct {
	config string
	// componentCAFile / componentTrustDomain: client certificates of CMK components accepted by the workload key
	// endpoint beside X.509-SVIDs (pkg/mtls; docs/certificates.md).
	componentCAFile      string
	componentTrustDomain string
}

func (c *certRenewOptions) bind(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "cert-renew-config", "", "Renewal loop YAML (pkg/certrenew.Config): keeps the Crypto (Manager) / Crypto (Migrate) client certificates issued by cert-manager and renewed at 2/3 of their lifetime, in Secrets or files. Runs on the elected leader. Empty: off.")
	fs.StringVar(&c.componentCAFile, "component-ca-file", "", "PEM bundle of the CA(s) of the CMK certificate issuer (old and new during a rollover; re-read every 30s). When set, the workload key endpoint also accepts client certificates with a URI SAN spiffe://<component-trust-domain>/tenant/<tenant>/component/<component>, beside X.509-SVIDs. Empty: SVIDs only.")
	fs.StringVar(&c.componentTrustDomain, "component-trust-domain", "apeiro.local", "Trust domain of the CMK certificate issuer's URI SANs (its trustDomain / spiffeTrustDomain).")
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
	cfg.Apply(r)
	// A manager.RunnableFunc needs leader election, so one replica renews.
	return mgr.Add(manager.RunnableFunc(r.Run))
}

// componentBundleReload is how often --component-ca-file is re-read: a mounted ConfigMap or Secret changes within
// about a minute of its update, and a rollover publishes the new CA long before anything is issued from it.
var componentBundleReload = 30 * time.Second

// componentVerifier returns the verifier of CMK component client certificates for the workload key endpoint, or nil
// when --component-ca-file is empty. The bundle is re-read periodically; an unreadable or invalid new bundle is
// logged and the previous one stays in force.
func componentVerifier(ctx context.Context, o options) (identity.ComponentVerifier, error) {
	c := o.certRenew
	if c.componentCAFile == "" {
		return nil, nil
	}
	read := func() ([]byte, error) {
		b, err := readBounded(c.componentCAFile, 1<<20)
		if err != nil {
			return nil, fmt.Errorf("--component-ca-file: %w", err)
		}
		return b, nil
	}
	b, err := read()
	if err != nil {
		return nil, err
	}
	v, err := mtls.NewVerifier(c.componentTrustDomain, b)
	if err != nil {
		return nil, fmt.Errorf("--component-ca-file / --component-trust-domain: %w", err)
	}
	log := ctrl.Log.WithName("component-certificates")
	go func() {
		t := time.NewTicker(componentBundleReload)
		defer t.Stop()
		last := b
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			nb, err := read()
			if err == nil && bytes.Equal(nb, last) {
				continue
			}
			if err == nil {
				err = v.SetBundle(nb)
			}
			if err != nil {
				log.Error(err, "component CA bundle not reloaded; keeping the previous one")
				continue
			}
			last = nb
			log.Info("component CA bundle reloaded")
		}
	}()
	log.Info("workload key endpoint accepts CMK component certificates", "trustDomain", c.componentTrustDomain)
	return v, nil
}

// readBounded reads at most limit bytes of path and fails when the file is larger.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s exceeds %d bytes", path, limit)
	}
	return b, nil
}
