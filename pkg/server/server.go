// Package server is the HTTPS server of the admission webhook. It implements controller-runtime's webhook.Server
// (so the manager runs it and gates readiness on it) with the transport settings a security control needs, several
// of which controller-runtime's DefaultServer hard-codes: TLS 1.2 minimum, HTTP/1.1 only (no HTTP/2 on the webhook
// port: it removes the rapid-reset and CONTINUATION-flood class of attacks, and the API server does not need it),
// a 10 s read-header timeout, bounded header size, idle timeout, and the serving certificate reloaded from disk on
// rotation (certwatcher) without a restart. Limiter (limits.go) bounds each request in front of the handlers: method,
// body size, the bodies held at once, and per-request deadlines.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

// Options configure the server. Zero values take the documented defaults.
type Options struct {
	// Host to listen on; empty means all interfaces.
	Host string
	// Port to listen on; 0 picks a free port (tests), default is not applied here: callers pass 9443.
	Port int
	// CertDir holds tls.crt and tls.key; they are watched and reloaded when they change.
	CertDir string
	// MinTLSVersion defaults to TLS 1.2; set tls.VersionTLS13 to require 1.3.
	MinTLSVersion uint16
	// ReadHeaderTimeout defaults to 10 s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout for keep-alive connections defaults to 90 s (the API server's transport keeps connections alive).
	IdleTimeout time.Duration
	// MaxHeaderBytes defaults to 64 KiB.
	MaxHeaderBytes int
	// ShutdownTimeout bounds the graceful drain; defaults to 30 s.
	ShutdownTimeout time.Duration
	// ClientCAFile, when set, requires every client to present a certificate signed by one of these CAs: the API
	// server then authenticates to the webhook (configure it with an AdmissionConfiguration kubeconfig). Off by
	// default, as in Kubernetes; without it, restrict who can reach the port with a NetworkPolicy.
	ClientCAFile string
	// GetCertificate overrides the certificate source (tests); CertDir is then ignored.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Draining, when set, reports that the process is going away (it got SIGTERM) but still serves: readiness
	// (StartedChecker) fails so the endpoint is taken out of rotation, and every response carries "Connection:
	// close" so clients holding kept-alive connections open their next one to another replica. Closing a connection
	// right after a response is the only close a client cannot race with a new request on it.
	Draining func() bool
}

// Server is an HTTPS admission webhook server.
type Server struct {
	opts Options
	mux  *http.ServeMux

	mu      sync.Mutex
	started bool
	addr    net.Addr
}

var _ webhook.Server = (*Server)(nil)

// New returns a server; register handlers before Start.
func New(opts Options) *Server {
	if opts.MinTLSVersion == 0 {
		opts.MinTLSVersion = tls.VersionTLS12
	}
	if opts.ReadHeaderTimeout <= 0 {
		opts.ReadHeaderTimeout = 10 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 90 * time.Second
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = 64 << 10
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	return &Server{opts: opts, mux: http.NewServeMux()}
}

// TLSConfig is the server's TLS configuration without a certificate source.
func TLSConfig(minVersion uint16) *tls.Config {
	return &tls.Config{
		MinVersion: minVersion,
		// Only HTTP/1.1 is offered in ALPN, so no client can negotiate HTTP/2.
		NextProtos: []string{"http/1.1"},
	}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every replica serves.
func (s *Server) NeedLeaderElection() bool { return false }

// Register adds a handler for path.
func (s *Server) Register(path string, hook http.Handler) {
	s.mux.Handle(path, hook)
}

// WebhookMux returns the server's mux.
func (s *Server) WebhookMux() *http.ServeMux { return s.mux }

// Addr is the bound address once started (useful with Port 0).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// StartedChecker fails until the TLS listener accepts connections; use it for readiness. It does not depend on any
// backend, so a keystore or IdP outage never takes the webhook out of its Service's endpoints.
func (s *Server) StartedChecker() healthz.Checker {
	return func(*http.Request) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.started {
			return errors.New("webhook server has not started yet")
		}
		if s.opts.Draining != nil && s.opts.Draining() {
			return errors.New("shutting down: serving requests until the shutdown delay ends, taking no new traffic")
		}
		return nil
	}
}

// Start serves until ctx is done, then drains in-flight requests.
func (s *Server) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("webhook-server")
	cfg := TLSConfig(s.opts.MinTLSVersion)
	cfg.GetCertificate = s.opts.GetCertificate
	if cfg.GetCertificate == nil {
		w, err := certwatcher.New(filepath.Join(s.opts.CertDir, "tls.crt"), filepath.Join(s.opts.CertDir, "tls.key"))
		if err != nil {
			return fmt.Errorf("loading the serving certificate from %s: %w", s.opts.CertDir, err)
		}
		go func() {
			if err := w.Start(ctx); err != nil {
				log.Error(err, "certificate watcher stopped")
			}
		}()
		cfg.GetCertificate = w.GetCertificate
	}
	if s.opts.ClientCAFile != "" {
		pemBytes, err := os.ReadFile(s.opts.ClientCAFile)
		if err != nil {
			return fmt.Errorf("reading the client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return fmt.Errorf("client CA file %s holds no PEM certificate", s.opts.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	ln, err := tls.Listen("tcp", net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port)), cfg)
	if err != nil {
		return fmt.Errorf("listening for webhooks: %w", err)
	}
	srv := &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    s.opts.MaxHeaderBytes,
		// A non-nil empty map disables the automatic HTTP/2 upgrade path of net/http.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		// TLS handshake and protocol errors go to the structured log, not to stderr.
		ErrorLog: stdlog.New(logWriter{log}, "", 0),
		// Requests keep running while the server drains after ctx is cancelled.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	s.mu.Lock()
	s.started = true
	s.addr = ln.Addr()
	s.mu.Unlock()
	log.Info("serving webhooks", "addr", ln.Addr().String(), "minTLS", tls.VersionName(s.opts.MinTLSVersion))

	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Error(err, "graceful shutdown did not finish")
		}
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-done
	return nil
}

// handler is the mux, behind the "Connection: close" of a draining process when Options.Draining is set.
func (s *Server) handler() http.Handler {
	draining := s.opts.Draining
	if draining == nil {
		return s.mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining() {
			// net/http closes the connection once this response is written.
			w.Header().Set("Connection", "close")
		}
		s.mux.ServeHTTP(w, r)
	})
}

// logWriter adapts net/http's error log to logr (at V(1): handshake errors from scanners are routine noise).
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.V(1).Info(strings.TrimSpace(string(p)))
	return len(p), nil
}
