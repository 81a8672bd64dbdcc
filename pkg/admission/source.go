package admission

import (
	"context"
	"encoding/json"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// Source is where ownership comes from when it is not the namespace label of a plain Kubernetes cluster. Both
// sources feed the same hierarchy.Model (Directory.Model); the handlers never know which one is in use.
//
//   - Plain Kubernetes (Directory.Source == nil): a namespace belongs to the tenant named by its cmk.apeiro.io/tenant
//     label, and Accounts are keyed by namespace/name.
//   - kcp (pkg/kcp): an object belongs to the tenant of its logical cluster (workspace), which the API server stamps
//     on the object; Accounts are keyed by logical cluster, namespace and name, so equal namespace names in two
//     workspaces never collide.
type Source interface {
	// Scope derives, from the request as the API server sent it, what TenantOfNamespace and AccountKey need later
	// (for kcp: the object's logical cluster). It must not trust fields the writer controls for ownership.
	Scope(ctx context.Context, req admission.Request) context.Context
	// TenantOfNamespace returns the tenant owning objects in namespace ns of the request's scope; ErrNoTenant when
	// the scope belongs to no tenant.
	TenantOfNamespace(ctx context.Context, ns string) (string, error)
	// AccountKey returns the model key of the Account that k names from the request's scope.
	AccountKey(ctx context.Context, k hierarchy.AccountKey) hierarchy.AccountKey
}

// scoped lets the Source, when there is one, derive the request's scope before the handler runs.
func (h *Handlers) scoped(fn admission.HandlerFunc) admission.HandlerFunc {
	return func(ctx context.Context, req admission.Request) admission.Response {
		if h.Dir != nil && h.Dir.Source != nil {
			ctx = h.Dir.Source.Scope(ctx, req)
		}
		return fn(ctx, req)
	}
}

// accountKey maps an Account reference to its model key through the Source (identity without one).
func (d *Directory) accountKey(ctx context.Context, k hierarchy.AccountKey) hierarchy.AccountKey {
	if d.Source == nil {
		return k
	}
	return d.Source.AccountKey(ctx, k)
}

// ObjectMeta is the metadata a Source reads from a request's object (the new object, or the old one on DELETE).
type ObjectMeta struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// RequestMeta decodes only the metadata of the request's object; errors leave it empty (the handler itself reports
// malformed objects).
func RequestMeta(req admission.Request) ObjectMeta {
	raw := req.Object.Raw
	if len(raw) == 0 {
		raw = req.OldObject.Raw
	}
	var o struct {
		Metadata ObjectMeta `json:"metadata"`
	}
	_ = json.Unmarshal(raw, &o)
	return o.Metadata
}
