package admission

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/netguard"
)

// ValidateTenant checks Tenant writes against the hierarchy rules (docs/hierarchy.md), the Platform Mesh region and
// audience policy, and protects deletes of tenants that still have children or shadows.
func (h *Handlers) ValidateTenant(ctx context.Context, req admission.Request) admission.Response {
	if r := expectKind(req, cmkv1.GroupVersion.Group, "Tenant"); r != nil {
		return *r
	}
	ctx = withDryRun(ctx, req) // a dry run writes nothing, not even into the model (liveness.go)
	switch req.Operation {
	case admissionv1.Delete:
		return h.validateTenantDelete(ctx, req)
	case admissionv1.Create, admissionv1.Update:
	default:
		return admission.Allowed("")
	}
	var t cmkv1.Tenant
	if err := decode(req.Object.Raw, &t); err != nil {
		return badRequest("Tenant: %v", err)
	}
	var errs field.ErrorList
	var old *cmkv1.Tenant
	if req.Operation == admissionv1.Update {
		old = &cmkv1.Tenant{}
		if err := decode(req.OldObject.Raw, old); err != nil {
			return badRequest("Tenant (old object): %v", err)
		}
		if lastFinalizerRemoved(old, &t) {
			return h.tenantDeleteChecks(ctx, t.Name)
		}
	}
	derived := map[string]string{cmkv1.TenantLabel: t.Name, ParentLabel: t.Spec.Parent, ShadowOfLabel: t.Spec.ShadowOf}
	for _, l := range sortedKeys(derived) {
		if got, ok := t.Labels[l]; ok && got != derived[l] {
			errs = append(errs, invalid("metadata.labels["+l+"]", RuleLabelMismatch, "value %q does not match the spec (%q)", got, derived[l]))
		}
	}
	// The mutating webhook stamps the tenant label from the name; with generateName the name is only assigned after
	// mutation, so such a Tenant would be stored unlabelled. Tenants are named by their tenant ID: say so.
	if _, ok := t.Labels[cmkv1.TenantLabel]; !ok {
		msg := "is missing (the mutating webhook stamps it; is it registered?)"
		if t.GenerateName != "" {
			msg = "is missing: Tenants are named by their tenant ID, so metadata.generateName is not supported; set metadata.name"
		}
		errs = append(errs, invalid("metadata.labels["+cmkv1.TenantLabel+"]", RuleLabelMissing, "%s", msg))
	}
	// Attaching a tenant to a tree (on create; the fields are immutable afterwards) is a write into the parent's or
	// shadow target's tree too: the new tenant inherits reference rights there. The caller must be allowed on both.
	scope := []string{t.Name}
	if req.Operation == admissionv1.Create {
		scope = append(scope, t.Spec.Parent, t.Spec.ShadowOf)
	}
	for _, id := range scope {
		if id == "" {
			continue
		}
		if r := h.authorize(ctx, req, "Tenant", t.Name, id, ActionWrite); r != nil {
			return *r
		}
	}

	if old != nil {
		errs = append(errs, immutable("spec.type", string(old.Spec.Type), string(t.Spec.Type))...)
		errs = append(errs, immutable("spec.parent", old.Spec.Parent, t.Spec.Parent)...)
		errs = append(errs, immutable("spec.shadowOf", old.Spec.ShadowOf, t.Spec.ShadowOf)...)
	} else {
		// Load the parent / shadow target chain so the model judges with what the API server holds right now, and
		// refuse to attach to a tenant that is being deleted (the model keeps it until its finalizers are gone).
		for _, ref := range []struct{ field, id string }{{"spec.parent", t.Spec.Parent}, {"spec.shadowOf", t.Spec.ShadowOf}} {
			if ref.id == "" {
				continue
			}
			if err := h.Dir.EnsureTenant(ctx, ref.id); err != nil {
				return errored(http.StatusInternalServerError, "%v", err)
			}
			state, err := h.Dir.LiveTenantState(ctx, ref.id)
			if err != nil {
				return errored(http.StatusInternalServerError, "%v", err)
			}
			if state == stateTerminating {
				errs = append(errs, invalid(ref.field, RuleTerminating, "tenant %q is being deleted; no tenant may attach to it", ref.id))
			}
		}
		if err := h.Dir.Model.ValidateTenant(TenantFromObject(&t)); err != nil {
			fe, ok := fromRule(err, "spec")
			if !ok {
				return errored(http.StatusInternalServerError, "validating hierarchy: %v", err)
			}
			errs = append(errs, fe)
		}
	}

	var aud []string
	if t.Spec.OIDCProvider != nil {
		aud = t.Spec.OIDCProvider.Audiences
		errs = append(errs, checkOIDC("spec.oidcProvider", t.Spec.OIDCProvider.Issuer, t.Spec.OIDCProvider.JWKSURI, aud)...)
	}
	if old == nil || old.Spec.Region != t.Spec.Region || !slices.Equal(oldAudiences(old), aud) {
		if fe, r := h.checkRegion(ctx, t.Spec.Region, aud); r != nil {
			return *r
		} else if fe != nil {
			errs = append(errs, fe)
		}
	}
	if len(errs) > 0 {
		return denyErrs("Tenant", t.Name, errs)
	}
	return allowed()
}

func oldAudiences(t *cmkv1.Tenant) []string {
	if t == nil || t.Spec.OIDCProvider == nil {
		return nil
	}
	return t.Spec.OIDCProvider.Audiences
}

func (h *Handlers) validateTenantDelete(ctx context.Context, req admission.Request) admission.Response {
	name := req.Name
	if r := h.authorize(ctx, req, "Tenant", name, name, ActionDelete); r != nil {
		return *r
	}
	return h.tenantDeleteChecks(ctx, name)
}

// tenantDeleteChecks refuses to let tenant name go while anything still depends on it. It runs on the DELETE and
// again on the UPDATE that removes the last finalizer of a terminating tenant.
func (h *Handlers) tenantDeleteChecks(ctx context.Context, name string) admission.Response {
	if err := h.Dir.Model.ValidateTenantDelete(name); err != nil {
		if fe, ok := fromRule(err, "metadata.name"); ok {
			return denyOne("Tenant", name, fe)
		}
		return errored(http.StatusInternalServerError, "validating delete: %v", err)
	}
	// The informers may not have seen a child created a moment ago: confirm with one indexed live query.
	children, shadows, err := h.Dir.LiveDependents(ctx, name, 5)
	if err != nil {
		return errored(http.StatusInternalServerError, "%v", err)
	}
	if len(children) > 0 {
		return denyOne("Tenant", name, invalid("metadata.name", hierarchy.RuleDeleteChildren,
			"tenant %q still has children (%s)", name, strings.Join(children, ", ")))
	}
	if len(shadows) > 0 {
		return denyOne("Tenant", name, invalid("metadata.name", hierarchy.RuleDeleteShadows,
			"tenant %q is still the target of shadows (%s)", name, strings.Join(shadows, ", ")))
	}
	namespaces, accounts, err := h.Dir.LiveAssigned(ctx, name, 5)
	if err != nil {
		return errored(http.StatusInternalServerError, "%v", err)
	}
	if len(namespaces) > 0 || len(accounts) > 0 {
		return denyOne("Tenant", name, invalid("metadata.name", RuleTenantInUse,
			"tenant %q still owns namespaces [%s] and accounts [%s]; remove the namespaces' %s label (and their accounts) first",
			name, strings.Join(namespaces, ", "), strings.Join(accounts, ", "), cmkv1.TenantLabel))
	}
	return allowed()
}

// checkRegion asks the region policy; a definitive "no" is a field error, a failure to ask is an errored response
// (the failure policy decides).
func (h *Handlers) checkRegion(ctx context.Context, region string, aud []string) (*field.Error, *admission.Response) {
	err := h.Regions.CheckRegion(ctx, region, aud)
	if err == nil {
		return nil, nil
	}
	var pe *PolicyError
	if errors.As(err, &pe) {
		fe := invalid(pe.Field, RuleRegion, "%s", pe.Msg)
		return fe, nil
	}
	r := errored(http.StatusServiceUnavailable, "checking region %q: %v", region, err)
	return nil, &r
}

// checkOIDC validates a tenant's identity provider URLs: they are fetched by the identity plugin, so the same
// outbound rules as for tenant webhooks apply.
func checkOIDC(path, issuer, jwks string, audiences []string) field.ErrorList {
	var errs field.ErrorList
	if _, err := netguard.CheckURL(issuer); err != nil {
		errs = append(errs, invalid(path+".issuer", RuleURL, "%q is refused: %v", truncate(issuer), err))
	}
	if _, err := netguard.CheckURL(jwks); err != nil {
		errs = append(errs, invalid(path+".jwks_uri", RuleURL, "%q is refused: %v", truncate(jwks), err))
	}
	for i, a := range audiences {
		if a == "" || len(a) > 253 || strings.ContainsFunc(a, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			errs = append(errs, invalid(fmt.Sprintf("%s.audiences[%d]", path, i), RuleAudience, "audience must be 1-253 printable ASCII characters without spaces"))
		}
	}
	return errs
}

func immutable(path, old, cur string) field.ErrorList {
	if old == cur {
		return nil
	}
	return field.ErrorList{invalid(path, RuleImmutable, "is immutable (was %q, now %q)", truncate(old), truncate(cur))}
}

// truncate keeps hostile values from bloating messages and logs.
func truncate(s string) string {
	const max = 128
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
