package main

import (
	"fmt"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/apeirora/apeiro-cmk/pkg/controllers/inuse"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpctrl"
)

// setupKCPInUse wires the in-use finalizer in kcp mode as setupInUse does on plain Kubernetes: it returns the
// finalizer the mutating webhook stamps on Tenant and Account creates and adds the in-use controller (leader only,
// pkg/kcp/kcpctrl) to the manager, fed with the Account events of the shared watch (wopts.OnAccount must already be
// set; the controller is chained after it). With --in-use-finalizer=false nothing is stamped and no controller runs.
func setupKCPInUse(mgr ctrl.Manager, o options, base *rest.Config, graph *kcp.Graph, model *hierarchy.Model, wopts *kcp.WatcherOptions) (string, error) {
	if !o.inUse.enabled {
		return "", nil
	}
	if o.inUse.grace <= 0 {
		return "", fmt.Errorf("--in-use-grace must be positive, got %s", o.inUse.grace)
	}
	// base reads and patches inside single workspaces; watch lists and watches across all (cmd/webhook/kcpwatch.go).
	watch, err := o.kcp.watchConfig(base)
	if err != nil {
		return "", err
	}
	c, err := kcpctrl.NewInUse(kcpctrl.InUseOptions{Config: base, WatchConfig: watch, Paths: graph, Model: model, Grace: o.inUse.grace,
		Log: ctrl.Log.WithName("kcp-inuse")})
	if err != nil {
		return "", err
	}
	if err := mgr.Add(c); err != nil {
		return "", err
	}
	wopts.OnAccount = chainEvents(wopts.OnAccount, c.OnAccount)
	return inuse.Finalizer, nil
}

// chainEvents calls each non-nil handler in turn.
func chainEvents(fs ...func(kcp.ObjectEvent)) func(kcp.ObjectEvent) {
	return func(ev kcp.ObjectEvent) {
		for _, f := range fs {
			if f != nil {
				f(ev)
			}
		}
	}
}
