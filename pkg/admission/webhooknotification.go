package admission

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/netguard"
)

// ValidateWebHookNotification checks ownership and that the target URL is safe to call from inside the platform
// (https, public host; the alert plugin checks the resolved address again at dispatch time).
func (h *Handlers) ValidateWebHookNotification(ctx context.Context, req admission.Request) admission.Response {
	if r := expectKind(req, cmkv1.GroupVersion.Group, "WebHookNotification"); r != nil {
		return *r
	}
	if !isWrite(req.Operation) {
		return admission.Allowed("")
	}
	var w cmkv1.WebHookNotification
	if err := decode(req.Object.Raw, &w); err != nil {
		return badRequest("WebHookNotification: %v", err)
	}
	_, r := h.ownedWrite(ctx, req, "WebHookNotification", w.Name, w.Labels)
	if r != nil {
		return *r
	}
	if _, err := netguard.CheckURL(w.Spec.URL); err != nil {
		return deny("WebHookNotification", w.Name, fieldErr("spec.url", RuleURL, "%q is refused: %v", truncate(w.Spec.URL), err))
	}
	if w.Spec.SigningSecretRef == nil {
		return allowed("spec.signingSecretRef is not set: deliveries will not be signed and receivers cannot verify them")
	}
	return allowed()
}
