package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/apeirora/apeiro-cmk/pkg/identity"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/netguard"
	"github.com/apeirora/apeiro-cmk/pkg/server"
)

// The key chain is the workload key endpoint's key service.
var _ identity.KeyService = (*keychain.Chain)(nil)

// TokenReviewPath is where the webhook server answers the API server's authentication webhook.
const TokenReviewPath = "/tokenreview"

// identityOptions are the flags of the identity sidecar (docs/identity.md).
type identityOptions struct {
	config        string
	spiffeTimeout time.Duration
	tenantSync    time.Duration
}

func (i *identityOptions) bind(fs *flag.FlagSet) {
	fs.StringVar(&i.config, "identity-config", "", "Identity sidecar YAML (platform IdP, workspace roles, SPIFFE, workload key endpoint; docs/identity.md). When set, "+TokenReviewPath+" serves the API server's TokenReview authentication webhook. Empty: off.")
	fs.DurationVar(&i.spiffeTimeout, "spiffe-timeout", identity.DefaultWorkloadAPITimeout, "Budget for the first SPIFFE Workload API update at start.")
	fs.DurationVar(&i.tenantSync, "tenant-issuer-sync-interval", 30*time.Second, "How often Tenants' spec.oidcProvider issuers are re-read (with tenantIssuers: true).")
}

// setupIdentity registers the TokenReview handler on the webhook server and, when configured, adds the workload
// key mTLS endpoint and the tenant issuer sync to the manager. Nothing here calls an IdP: discovery and JWKS are
// fetched on the first token, so the server starts during an IdP outage.
func setupIdentity(ctx context.Context, mgr manager.Manager, wh *server.Server, o options, chain *keychain.Chain) error {
	if o.id.config == "" {
		return nil
	}
	log := ctrl.Log.WithName("identity")
	slogger := slog.New(logr.ToSlogHandler(log))
	cfg, err := identity.LoadConfig(o.id.config)
	if err != nil {
		return err
	}
	// Every discovery and JWKS fetch goes through netguard: https only, public addresses only, bounded.
	client := netguard.NewClient(netguard.ClientOptions{AllowLoopback: cfg.AllowLoopback})
	if cfg.AllowLoopback {
		log.Info("WARNING: identity config sets allowLoopback: the IdP may be reached on loopback addresses (tests and local development only)")
	}
	auth, sv, err := cfg.Build(ctx, client, o.tenantGroups, o.id.spiffeTimeout)
	if err != nil {
		return err
	}
	if sv != nil {
		go func() { <-ctx.Done(); _ = sv.Close() }()
	}
	wh.Register(TokenReviewPath, &identity.TokenReviewHandler{Auth: auth, Log: slogger})

	if cfg.TenantIssuers {
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			syncTenantIssuers(ctx, mgr, auth, o.id.tenantSync, log)
			return nil
		})); err != nil {
			return err
		}
	}
	if cfg.WorkloadKeys != nil && cfg.WorkloadKeys.BindAddress != "" {
		if chain == nil {
			return errors.New("identity: workloadKeys needs the key chain")
		}
		h := &identity.WorkloadKeyHandler{SPIFFE: sv, Keys: identity.KubeKeyLookup{Reader: mgr.GetClient()}, Service: chain, Log: slogger}
		if h.Components, err = componentVerifier(ctx, o); err != nil { // cmd/webhook/certs.go
			return err
		}
		if err := addWorkloadKeyServer(mgr, cfg.WorkloadKeys.BindAddress, o, h); err != nil {
			return err
		}
	}
	log.Info("identity sidecar enabled", "platformIssuers", len(cfg.Platform), "tenantIssuers", cfg.TenantIssuers,
		"spiffe", sv != nil, "workloadKeys", cfg.WorkloadKeys != nil && cfg.WorkloadKeys.BindAddress != "")
	return nil
}

func syncTenantIssuers(ctx context.Context, mgr manager.Manager, auth *identity.Authenticator, every time.Duration, log logr.Logger) {
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return
	}
	var last []identity.IssuerConfig
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		issuers, skipped, err := identity.TenantIssuers(ctx, mgr.GetClient())
		switch {
		case err != nil:
			log.Error(err, "reading tenant issuers; keeping the previous set")
		case !reflect.DeepEqual(issuers, last):
			if err := auth.SetTenantIssuers(issuers); err != nil {
				log.Error(err, "some tenant issuers were not accepted")
			}
			if len(skipped) > 0 {
				log.Info("tenants whose oidcProvider has no audiences are not trusted", "tenants", skipped)
			}
			log.Info("tenant issuers updated", "count", len(issuers))
			last = issuers
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// addWorkloadKeyServer serves the workload key endpoint on its own listener with the webhook's serving
// certificate. Client certificates are requested, not verified by crypto/tls: X.509-SVIDs are verified in the
// handler against the SPIFFE bundles (which rotate), and callers without one may present a JWT-SVID instead.
func addWorkloadKeyServer(mgr manager.Manager, addr string, o options, h http.Handler) error {
	cw, err := certwatcher.New(filepath.Join(o.certDir, "tls.crt"), filepath.Join(o.certDir, "tls.key"))
	if err != nil {
		return fmt.Errorf("workload key endpoint: %w", err)
	}
	if err := mgr.Add(cw); err != nil {
		return err
	}
	minTLS := uint16(tls.VersionTLS12)
	if o.tls13 {
		minTLS = tls.VersionTLS13
	}
	mux := http.NewServeMux()
	mux.Handle(identity.WorkloadKeyPath, h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		TLSConfig: &tls.Config{
			MinVersion:     minTLS,
			GetCertificate: cw.GetCertificate,
			ClientAuth:     tls.RequestClientCert,
			NextProtos:     []string{"http/1.1"},
		},
	}
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("workload key endpoint: %w", err)
		}
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}))
}
