package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/controllers/inuse"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// inUseOptions control the in-use finalizer of Tenants and Accounts (pkg/controllers/inuse, docs/admission.md).
type inUseOptions struct {
	enabled bool
	grace   time.Duration
}

func (o *inUseOptions) bind(fs *flag.FlagSet) {
	fs.BoolVar(&o.enabled, "in-use-finalizer", true, "Stamp the cmk.apeiro.io/in-use finalizer on every Tenant and Account and run the controller that removes it once nothing depends on a deleted one (closes the delete-parent / create-child race between replicas).")
	fs.DurationVar(&o.grace, "in-use-grace", inuse.DefaultGrace, "How long after deletion started the in-use finalizer stays at least, so that creates admitted just before the delete are stored before the last \"no dependents\" check; keep it above the validating webhooks' timeout.")
}

// setupInUse wires the in-use finalizer: the mutating webhook stamps it and the controller (leader only) removes it.
// With the option off nothing is stamped; finalizers stamped earlier are then left for an operator to remove.
func setupInUse(mgr ctrl.Manager, o options, dir *admission.Directory, h *admission.Handlers) error {
	if !o.inUse.enabled {
		return nil
	}
	if o.inUse.grace <= 0 {
		return fmt.Errorf("--in-use-grace must be positive, got %s", o.inUse.grace)
	}
	h.InUseFinalizer = inuse.Finalizer
	return inuse.SetupWithManager(mgr, liveDependents{dir}, o.inUse.grace, inuse.DefaultRecheck)
}

// liveDependents answers the in-use controller from the webhook's own live, indexed lists: the same queries the
// delete checks make, so the controller and the webhook agree on what "in use" means.
type liveDependents struct{ dir *admission.Directory }

const dependentsShown = 5

func (d liveDependents) TenantDependents(ctx context.Context, id string) ([]string, error) {
	children, shadows, err := d.dir.LiveDependents(ctx, id, dependentsShown)
	if err != nil && !kindGone(err) {
		return nil, err
	}
	namespaces, accounts, err := d.dir.LiveAssigned(ctx, id, dependentsShown)
	if err != nil && !kindGone(err) {
		return nil, err
	}
	var out []string
	for _, l := range []struct {
		what  string
		names []string
	}{{"tenant", children}, {"shadow", shadows}, {"namespace", namespaces}, {"account", accounts}} {
		for _, n := range l.names {
			out = append(out, l.what+" "+n)
		}
	}
	return out, nil
}

func (d liveDependents) AccountDependents(ctx context.Context, namespace, name string) ([]string, error) {
	keys, err := d.dir.LiveKeysOf(ctx, hierarchy.AccountKey{Namespace: namespace, Name: name}, dependentsShown)
	if err != nil && !kindGone(err) {
		return nil, err
	}
	return keys, nil
}

// kindGone reports a list that failed because the dependents' kind no longer exists (its CRD was deleted, e.g. by
// an uninstall that removes the CRDs): no object of that kind can depend on anything, so the finalizer may go.
// Treating it as an error would hold every Tenant and Account (and with them their CRDs) forever.
func kindGone(err error) bool {
	return apierrors.IsNotFound(err) || meta.IsNoMatchError(err)
}
