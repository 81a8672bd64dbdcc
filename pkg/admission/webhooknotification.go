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
	r, resp := validateOwned(ctx, h, req, "WebHookNotification", func() *cmkv1.WebHookNotification { return &cmkv1.WebHookNotification{} }, ownedHooks[*cmkv1.WebHookNotification]{})
	if resp != nil {
		return *resp
	}
	w := r.obj
	if _, err := netguard.CheckURL(w.Spec.URL); err != nil {
		return denyOne("WebHookNotification", w.Name, invalid("spec.url", RuleURL, "%q is refused: %v", truncate(w.Spec.URL), err))
	}
	if w.Spec.SigningSecretRef == nil {
		return allowed("spec.signingSecretRef is not set: deliveries will not be signed and receivers cannot verify them")
	}
	return allowed()
}
