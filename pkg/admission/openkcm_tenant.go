package admission

import (
	"context"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// OpenKCMGroup is the API group of upstream OpenKCM's Tenant (openkcm/platform-mesh-controller).
const OpenKCMGroup = "operations.openkcm.io"

// openKCMTenant is the part of the upstream Tenant this webhook validates. Upstream derives tenant identity from the
// kcp workspace path, not from spec, so only region and identity provider are checked here.
type openKCMTenant struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Region       string `json:"region"`
		OIDCProvider *struct {
			Issuer    string   `json:"issuer"`
			JWKSURI   string   `json:"jwks_uri"`
			Audiences []string `json:"audiences"`
		} `json:"oidcProvider"`
	} `json:"spec"`
}

// ValidateOpenKCMTenant applies the Platform Mesh region/audience policy (FR-4.2) and the outbound URL rules to
// upstream operations.openkcm.io/v1alpha1 Tenants, where that CRD is installed.
func (h *Handlers) ValidateOpenKCMTenant(ctx context.Context, req admission.Request) admission.Response {
	if r := expectKind(req, OpenKCMGroup, "Tenant"); r != nil {
		return *r
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	var t openKCMTenant
	if err := decode(req.Object.Raw, &t); err != nil {
		return badRequest("Tenant: %v", err)
	}
	var errs field.ErrorList
	if t.Spec.Region == "" {
		errs = append(errs, invalid("spec.region", RuleRegion, "is required"))
	}
	var aud []string
	if p := t.Spec.OIDCProvider; p != nil {
		aud = p.Audiences
		errs = append(errs, checkOIDC("spec.oidcProvider", p.Issuer, p.JWKSURI, aud)...)
	}
	if t.Spec.Region != "" {
		fe, r := h.checkRegion(ctx, t.Spec.Region, aud)
		if r != nil {
			return *r
		}
		if fe != nil {
			errs = append(errs, fe)
		}
	}
	if len(errs) > 0 {
		return denyErrs("Tenant", t.Metadata.Name, errs)
	}
	return allowed()
}
