package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// Handlers holds the dependencies of every admission handler. Zero-value policy fields get working defaults in
// NewHandlers.
type Handlers struct {
	Dir         *Directory
	Regions     RegionPolicy
	Keys        KeyProber // nil: keys are not probed at admission (the Account reconciler still does)
	Permissions Permissions
	// ProbeTimeout is the budget of one key probe on the admission path; a slower keystore yields a warning.
	ProbeTimeout time.Duration
	// TrustDomains, when non-empty, restricts workload identities to these SPIFFE trust domains.
	TrustDomains []string
	// InUseFinalizer, when set, is added to every Tenant and Account at create (pkg/controllers/inuse owns it and
	// must run whenever this is set, or such objects can never be deleted).
	InUseFinalizer string
}

// DefaultProbeTimeout keeps a key probe well inside the validating webhook's 5 s timeout.
const DefaultProbeTimeout = 2 * time.Second

// NewHandlers fills in defaults.
func NewHandlers(h Handlers) *Handlers {
	if h.Regions == nil {
		h.Regions = StaticRegionPolicy{}
	}
	if h.Permissions == nil {
		h.Permissions = RBACDelegated{}
	}
	if h.ProbeTimeout <= 0 {
		h.ProbeTimeout = DefaultProbeTimeout
	}
	return &h
}

// decode unmarshals raw object JSON. Errors are reported without echoing the payload.
func decode(raw []byte, into any) error {
	if len(raw) == 0 {
		return errors.New("object is empty")
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("object does not decode: %w", err)
	}
	return nil
}

// expectKind rejects requests for kinds a handler does not serve (a misconfigured webhook configuration).
func expectKind(req admission.Request, group, kind string) *admission.Response {
	if req.Kind.Group != group || req.Kind.Kind != kind {
		r := badRequest("this endpoint validates %s.%s, got %s.%s", kind, group, req.Kind.Kind, req.Kind.Group)
		return &r
	}
	return nil
}

// ownerFor resolves the tenant owning a namespaced object from its namespace, never from the object, and checks the
// object's ownership label (stamped by the mutating webhook) agrees.
func (h *Handlers) ownerFor(ctx context.Context, kind, namespace, name string, labels map[string]string, mutating bool) (string, *admission.Response) {
	owner, err := h.Dir.TenantOfNamespace(ctx, namespace)
	if errors.Is(err, ErrNoTenant) {
		r := denyOne(kind, name, invalid("metadata.namespace", RuleNSUnassigned,
			"namespace %q is not assigned to a tenant (label %s is missing on the namespace)", namespace, cmkv1.TenantLabel))
		return "", &r
	}
	if err != nil {
		r := errored(http.StatusInternalServerError, "resolving the owner of namespace %q: %v", namespace, err)
		return "", &r
	}
	if !mutating {
		got, ok := labels[cmkv1.TenantLabel]
		switch {
		case !ok:
			r := denyOne(kind, name, invalid("metadata.labels["+cmkv1.TenantLabel+"]", RuleOwnerMissing,
				"ownership label is missing (the mutating webhook stamps it; is it registered?)"))
			return "", &r
		case got != owner:
			r := denyOne(kind, name, invalid("metadata.labels["+cmkv1.TenantLabel+"]", RuleOwnerMismatch,
				"value %q does not match tenant %q that owns namespace %q", got, owner, namespace))
			return "", &r
		}
	}
	return owner, nil
}

// ownedWrite is the prologue every namespaced kind shares on CREATE and UPDATE, in this order: the owner comes from
// the namespace and must match the object's ownership label, the owning tenant must exist (and, on create, not be
// terminating), and the caller must be allowed to write that tenant's objects. The first failure is the answer.
func (h *Handlers) ownedWrite(ctx context.Context, req admission.Request, kind, name string, labels map[string]string) (string, *admission.Response) {
	owner, r := h.ownerFor(ctx, kind, req.Namespace, name, labels, false)
	if r != nil {
		return "", r
	}
	if r := h.requireTenant(ctx, req, kind, name, owner); r != nil {
		return "", r
	}
	if r := h.authorize(ctx, req, kind, name, owner, ActionWrite); r != nil {
		return "", r
	}
	return owner, nil
}

// requireTenant checks that the owning tenant exists. On create (a new object joins the tenant) the tenant is read
// live and must not be terminating: a tenant held by a finalizer stays in the model until it is gone, and an
// object admitted into it meanwhile would outlive it.
func (h *Handlers) requireTenant(ctx context.Context, req admission.Request, kind, name, owner string) *admission.Response {
	if err := h.Dir.EnsureTenant(ctx, owner); err != nil {
		r := errored(http.StatusInternalServerError, "%v", err)
		return &r
	}
	if _, ok := h.Dir.Model.Tenant(owner); !ok {
		r := denyOne(kind, name, invalid("metadata.namespace", RuleTenantUnknown,
			"tenant %q (from the namespace label) does not exist", owner))
		return &r
	}
	if req.Operation != admissionv1.Create {
		return nil
	}
	state, err := h.Dir.LiveTenantState(ctx, owner)
	if err != nil {
		r := errored(http.StatusInternalServerError, "%v", err)
		return &r
	}
	switch state {
	case stateMissing:
		r := denyOne(kind, name, invalid("metadata.namespace", RuleTenantUnknown,
			"tenant %q (from the namespace label) does not exist", owner))
		return &r
	case stateTerminating:
		r := denyOne(kind, name, invalid("metadata.namespace", RuleTerminating,
			"tenant %q (from the namespace label) is being deleted; no new objects may join it", owner))
		return &r
	}
	return nil
}

func (h *Handlers) authorize(ctx context.Context, req admission.Request, kind, name, tenant string, action Action) *admission.Response {
	if err := h.Permissions.Authorize(ctx, req.UserInfo, tenant, kind, action); err != nil {
		var pe *PolicyError
		if errors.As(err, &pe) {
			r := denyOne(kind, name, invalid(pe.Field, RulePermission, "%s", pe.Msg))
			return &r
		}
		r := errored(http.StatusServiceUnavailable, "checking permissions: %v", err)
		return &r
	}
	return nil
}

// isWrite reports CREATE or UPDATE.
func isWrite(op admissionv1.Operation) bool {
	return op == admissionv1.Create || op == admissionv1.Update
}

// jsonPointerEscape escapes a JSON pointer token (RFC 6901).
func jsonPointerEscape(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}
