package admission

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// ValidateNamespace guards the namespace -> tenant assignment (the cmk.apeiro.io/tenant label), on the namespace
// itself and on its status and finalize subresources, which carry the label too.
//
// Namespaces are assigned once while they hold anything of ours: the label may be set on an empty namespace and
// removed or changed only while the namespace holds no Account, ServiceEncryptionKey or WebHookNotification.
// Ownership of those objects is stamped from the namespace when they are written; re-labelling an occupied
// namespace would leave them carrying the old tenant's rights (its keys keep using Accounts now in another tenant)
// or hand them to the new one. Assigning a namespace also requires the tenant to exist and not be terminating.
//
// Who may change the label at all (platform administrators) is decided by the ValidatingAdmissionPolicy in
// deploy/base; this handler decides when a change is consistent with the objects stored.
func (h *Handlers) ValidateNamespace(ctx context.Context, req admission.Request) admission.Response {
	if r := expectKind(req, "", "Namespace"); r != nil {
		return *r
	}
	if !isWrite(req.Operation) {
		return admission.Allowed("")
	}
	var ns corev1.Namespace
	if err := decode(req.Object.Raw, &ns); err != nil {
		return badRequest("Namespace: %v", err)
	}
	oldTenant := ""
	if req.Operation == admissionv1.Update {
		var old corev1.Namespace
		if err := decode(req.OldObject.Raw, &old); err != nil {
			return badRequest("Namespace (old object): %v", err)
		}
		oldTenant = old.Labels[cmkv1.TenantLabel]
	}
	newTenant := ns.Labels[cmkv1.TenantLabel]
	if newTenant == oldTenant {
		return allowed()
	}
	field := "metadata.labels[" + cmkv1.TenantLabel + "]"
	if oldTenant != "" {
		kinds, err := h.Dir.LiveOccupants(ctx, ns.Name)
		if err != nil {
			return errored(http.StatusInternalServerError, "%v", err)
		}
		if len(kinds) > 0 {
			return denyOne("Namespace", ns.Name, invalid(field, RuleNamespaceOccupied,
				"namespace %q is assigned to tenant %q and still holds %s; a namespace keeps its tenant while it holds any (delete them first, or use a new namespace)",
				ns.Name, oldTenant, strings.Join(kinds, " and ")))
		}
	}
	if newTenant != "" {
		state, err := h.Dir.LiveTenantState(ctx, newTenant)
		if err != nil {
			return errored(http.StatusInternalServerError, "%v", err)
		}
		switch state {
		case stateMissing:
			return denyOne("Namespace", ns.Name, invalid(field, RuleTenantUnknown, "tenant %q does not exist", truncate(newTenant)))
		case stateTerminating:
			return denyOne("Namespace", ns.Name, invalid(field, RuleTerminating, "tenant %q is being deleted; no namespace may join it", newTenant))
		}
	}
	return allowed()
}

// LiveOccupants lists, live and metadata only, whether namespace ns holds Accounts, ServiceEncryptionKeys or
// WebHookNotifications, and returns the kinds it found (one object each is enough).
func (d *Directory) LiveOccupants(ctx context.Context, ns string) ([]string, error) {
	if d.Live == nil {
		return nil, nil
	}
	var kinds []string
	for _, kind := range []string{"Account", "ServiceEncryptionKey", "WebHookNotification"} {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(cmkv1.GroupVersion.WithKind(kind + "List"))
		if err := d.Live.List(ctx, list, client.InNamespace(ns), client.Limit(1)); err != nil {
			return nil, fmt.Errorf("listing %ss in namespace %q: %w", kind, ns, err)
		}
		if len(list.Items) > 0 {
			kinds = append(kinds, kind+"s")
		}
	}
	return kinds, nil
}
