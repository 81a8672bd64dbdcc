package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/apeirora/apeiro-cmk/pkg/server"
)

// DefaultShutdownDelay is how long a replica keeps serving after SIGTERM before it stops accepting connections.
// Kubernetes removes a terminating pod from its Service's endpoints at the same moment the kubelet sends SIGTERM,
// but the removal reaches kube-proxy on every node (and the API server's own service resolution) only some time
// later; connections the API server opens meanwhile still land on this replica. Five seconds covers that
// propagation in an ordinary cluster; deploy/base sets more (docs/reliability.md, "A replica stopped gracefully").
const DefaultShutdownDelay = 5 * time.Second

// shutdownOptions is the graceful stop of the process: what SIGTERM (or SIGINT) starts.
//
//  1. At once: /readyz fails (Options.Draining of the webhook server) and every webhook response carries
//     "Connection: close", so a client's kept-alive connection carries at most one more request and its next one
//     goes through the Service to a replica that stays. Keep-alives are switched off per response rather than with
//     http.Server.SetKeepAlivesEnabled(false), which also closes idle connections at once: a client may be writing
//     a request on one of those at that moment, and the API server does not retry a webhook POST.
//  2. For --shutdown-delay everything is served as usual.
//  3. Then the manager stops: the webhook server closes its listener and the connections still idle, and waits for
//     the requests in flight (each bounded by the request timeout); the process exits 0.
//
// A second signal exits at once with status 1, as controller-runtime's own handler does.
type shutdownOptions struct {
	delay time.Duration
	// draining is shared by the copies of options (run takes them by value).
	draining *atomic.Bool
}

func (s *shutdownOptions) bind(fs *flag.FlagSet) {
	s.draining = new(atomic.Bool)
	s.delay = DefaultShutdownDelay
	fs.Var((*delayFlag)(&s.delay), "shutdown-delay", "After SIGTERM: how long (a `duration` such as 15s) to keep serving, with /readyz failing and keep-alive off, before the listener closes and requests in flight are drained. Set it to cover the removal of the pod's endpoint reaching every node and API server; terminationGracePeriodSeconds must exceed it plus the request timeout. 0: drain at once.")
}

// delayFlag is a duration flag that refuses negative values (a typo such as "-5s" must not silently mean 0).
type delayFlag time.Duration

func (d *delayFlag) String() string { return time.Duration(*d).String() }

func (d *delayFlag) Set(v string) error {
	parsed, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	if parsed < 0 {
		return fmt.Errorf("must not be negative (0 drains at once), got %s", v)
	}
	*d = delayFlag(parsed)
	return nil
}

// isDraining reports whether a stop signal has arrived; it is the webhook server's Options.Draining.
func (s shutdownOptions) isDraining() bool { return s.draining != nil && s.draining.Load() }

// drainTimeout bounds the wait for requests in flight once the listener is closed: no admission call outlives the
// request timeout (the server cuts its connection then, and the API server gave up on it even earlier).
func (s shutdownOptions) drainTimeout() time.Duration { return server.DefaultRequestTimeout }

// signalContext replaces ctrl.SetupSignalHandler: the context it returns ends --shutdown-delay after the first
// SIGTERM or SIGINT.
func (s shutdownOptions) signalContext() context.Context {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
	return s.onSignal(context.Background(), ch, ctrl.Log.WithName("shutdown"), os.Exit)
}

// onSignal is signalContext with the signals, the log and the exit injected (tests).
func (s shutdownOptions) onSignal(parent context.Context, signals <-chan os.Signal, log logr.Logger, exit func(int)) context.Context {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		var sig os.Signal
		select {
		case sig = <-signals:
		case <-ctx.Done():
			return
		}
		s.draining.Store(true)
		log.Info("stop signal: readiness fails from now on and connections are closed after each response; serving on until the shutdown delay ends",
			"signal", sig.String(), "shutdownDelay", s.delay.String())
		timer := time.NewTimer(s.delay)
		select {
		case <-timer.C:
			log.Info("shutdown delay over: closing the listener and draining the requests in flight")
			cancel()
		case sig = <-signals:
			timer.Stop()
			cancel()
			log.Info("second stop signal: exiting at once", "signal", sig.String())
			exit(1)
			return
		}
		sig = <-signals
		log.Info("second stop signal: exiting at once", "signal", sig.String())
		exit(1)
	}()
	return ctx
}
