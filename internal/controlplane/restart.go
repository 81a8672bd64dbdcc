package controlplane

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// StopAPIServer stops kube-apiserver (SIGTERM, SIGKILL after grace; grace 0 is a crash) and leaves etcd running,
// as a rolling restart or a crash of the API server does in a cluster. StartAPIServer brings it back. With open
// watches kube-apiserver often takes longer than a few seconds to finish a SIGTERM.
func (cp *ControlPlane) StopAPIServer(grace time.Duration) error {
	if cp.APIServer == nil {
		return errors.New("controlplane: no kube-apiserver to stop")
	}
	if err := cp.APIServer.Stop(grace); err != nil {
		return fmt.Errorf("controlplane: stopping kube-apiserver: %w", err)
	}
	return nil
}

// StartAPIServer starts kube-apiserver again with the arguments of its previous run: same etcd, port,
// certificates and tokens, so every client (kubeconfig, the webhook's informers) reconnects to the same URL without
// being told. It returns when /readyz answers ok. The previous process must have exited (StopAPIServer).
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	prev := cp.APIServer
	if prev == nil {
		return errors.New("controlplane: kube-apiserver was never started")
	}
	if exited, _ := prev.Exited(); !exited {
		return errors.New("controlplane: kube-apiserver is still running; call StopAPIServer first")
	}
	client, err := cp.httpClient()
	if err != nil {
		return err
	}
	// The port was just released by the previous process; the kernel can hold it in TIME_WAIT for a moment
	// (kube-apiserver binds with SO_REUSEADDR, so this is rare), hence a few attempts.
	var lastErr error
	for attempt := 1; attempt <= maxPortAttempts; attempt++ {
		start := time.Now()
		p, err := StartProcess(prev.Name, prev.cmd.Path, prev.cmd.Args[1:], prev.LogPath)
		if err != nil {
			return fmt.Errorf("controlplane: %w", err)
		}
		cp.APIServer = p
		lastErr = WaitReady(ctx, cp.cfg.StartTimeout, p, func(ctx context.Context) error {
			return httpOK(ctx, client, cp.URL+"/readyz", cp.Token)
		})
		if lastErr == nil {
			fmt.Fprintf(cp.cfg.Progress, "controlplane: kube-apiserver ready again on %s in %.1fs\n", cp.URL, time.Since(start).Seconds())
			return nil
		}
		_ = p.Stop(cp.cfg.StopGrace)
		if !errors.Is(lastErr, errPortInUse) {
			break
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("controlplane: restarting kube-apiserver: %w", lastErr)
}

// RestartAPIServer is StopAPIServer with the configured grace followed by StartAPIServer.
func (cp *ControlPlane) RestartAPIServer(ctx context.Context) error {
	if err := cp.StopAPIServer(cp.cfg.StopGrace); err != nil {
		return err
	}
	return cp.StartAPIServer(ctx)
}
