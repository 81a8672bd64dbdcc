package kcpserver

import (
	"context"
	"fmt"
	"path/filepath"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/apeirora/apeiro-cmk/internal/devstack"
	"github.com/apeirora/apeiro-cmk/pkg/admission"
)

var (
	validatingGVR = admissionregistrationv1.SchemeGroupVersion.WithResource("validatingwebhookconfigurations")
	mutatingGVR   = admissionregistrationv1.SchemeGroupVersion.WithResource("mutatingwebhookconfigurations")
)

// RegisterWebhooks registers, in each workspace, the webhook configurations of deploy/base under root plus the
// upstream OpenKCM Tenant endpoint, pointing at url and trusting caPEM. In kcp a webhook configuration applies to
// the workspace it lives in, so every tenant workspace gets its own copy.
func RegisterWebhooks(ctx context.Context, base *rest.Config, root, url string, caPEM []byte, workspaces ...string) error {
	upstreamURL := url + admission.PathValidateOpenKCMTenant
	none := admissionregistrationv1.SideEffectClassNone
	fail := admissionregistrationv1.Fail
	for _, ws := range workspaces {
		// Rendered per workspace: Create fills in server-side fields.
		objs, _, err := devstack.RenderWebhookConfigurations(filepath.Join(root, "deploy", "base"), url, caPEM)
		if err != nil {
			return err
		}
		objs = append(objs, &admissionregistrationv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "apeiro-cmk-openkcm-tenant"},
			Webhooks: []admissionregistrationv1.ValidatingWebhook{{
				Name: "vtenant.operations.openkcm.io", AdmissionReviewVersions: []string{"v1"}, SideEffects: &none, FailurePolicy: &fail,
				ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &upstreamURL, CABundle: caPEM},
				Rules: []admissionregistrationv1.RuleWithOperations{{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{admission.OpenKCMGroup}, APIVersions: []string{"v1alpha1"}, Resources: []string{"tenants"}},
				}},
			}},
		})
		for _, o := range objs {
			gvr := validatingGVR
			switch v := o.(type) {
			case *admissionregistrationv1.ValidatingWebhookConfiguration:
				v.APIVersion, v.Kind = "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"
			case *admissionregistrationv1.MutatingWebhookConfiguration:
				v.APIVersion, v.Kind = "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"
				gvr = mutatingGVR
			}
			if _, err := Create(ctx, base, ws, gvr, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("registering %s in %s: %w", o.GetName(), ws, err)
			}
		}
	}
	return nil
}
