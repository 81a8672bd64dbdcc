package admission

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// ValidateAccount checks ownership, the immutability of the key binding and (on create) that the referenced L1 key
// exists. Its region is the keystore's own (e.g. an AWS region), not a Platform Mesh region, so the region policy
// does not apply; deletes are refused while ServiceEncryptionKeys still use the Account.
func (h *Handlers) ValidateAccount(ctx context.Context, req admission.Request) admission.Response {
	if r := expectKind(req, cmkv1.GroupVersion.Group, "Account"); r != nil {
		return *r
	}
	if req.Operation == admissionv1.Delete {
		key := h.Dir.accountKey(ctx, hierarchy.AccountKey{Namespace: req.Namespace, Name: req.Name})
		owner, err := h.Dir.TenantOfNamespace(ctx, req.Namespace)
		switch {
		case err == nil:
			if r := h.authorize(ctx, req, "Account", req.Name, owner, ActionDelete); r != nil {
				return *r
			}
		case !errors.Is(err, ErrNoTenant):
			return errored(http.StatusInternalServerError, "resolving the owner of namespace %q: %v", req.Namespace, err)
		}
		return h.accountDeleteChecks(ctx, key)
	}
	if !isWrite(req.Operation) {
		return admission.Allowed("")
	}
	var a cmkv1.Account
	if err := decode(req.Object.Raw, &a); err != nil {
		return badRequest("Account: %v", err)
	}
	var old *cmkv1.Account
	if req.Operation == admissionv1.Update {
		old = &cmkv1.Account{}
		if err := decode(req.OldObject.Raw, old); err != nil {
			return badRequest("Account (old object): %v", err)
		}
		if lastFinalizerRemoved(old, &a) {
			return h.accountDeleteChecks(ctx, hierarchy.AccountKey{Namespace: req.Namespace, Name: a.Name})
		}
	}
	_, r := h.ownedWrite(ctx, req, "Account", a.Name, a.Labels)
	if r != nil {
		return *r
	}
	var errs []FieldError
	if a.Spec.Auth != nil && a.Spec.Keystore == cmkv1.KeystoreAWS && a.Spec.Auth.SecretRef != nil {
		errs = append(errs, fieldErr("spec.auth.secretRef", RuleStaticCredentials, "aws Accounts authenticate with IRSA only; static credentials are refused"))
	}
	if old != nil {
		errs = append(errs, immutable("spec.keystore", string(old.Spec.Keystore), string(a.Spec.Keystore))...)
		errs = append(errs, immutable("spec.keyRef", old.Spec.KeyRef, a.Spec.KeyRef)...)
	}
	if len(errs) > 0 {
		return deny("Account", a.Name, errs...)
	}
	var warnings []string
	if req.Operation == admissionv1.Create && h.Keys != nil {
		if req.DryRun != nil && *req.DryRun {
			ctx = keychain.WithDryRun(ctx) // same verdict, but the prober caches nothing
		}
		if w, deny := h.probe(ctx, &a); deny != nil {
			return *deny
		} else if w != "" {
			warnings = append(warnings, w)
		}
	}
	return allowed(warnings...)
}

// accountDeleteChecks refuses to let Account key go while ServiceEncryptionKeys still use it. It runs on the DELETE
// and again on the UPDATE that removes the last finalizer of a terminating Account. The denial names only the keys
// in namespaces of the Account's own tenant; keys of other tenants (descendants, shadows) are counted, never named.
func (h *Handlers) accountDeleteChecks(ctx context.Context, key hierarchy.AccountKey) admission.Response {
	modelErr := h.Dir.Model.ValidateAccountDelete(key)
	if modelErr != nil {
		if _, ok := ruleErr(modelErr, "metadata.name"); !ok {
			return errored(http.StatusInternalServerError, "validating delete: %v", modelErr)
		}
	}
	// The informers may not have seen a key created a moment ago: confirm with one indexed live query.
	owner, _ := h.Dir.Model.AccountOwner(key)
	own, others, err := h.Dir.LiveKeysByOwner(ctx, key, owner, 50)
	if err != nil {
		return errored(http.StatusInternalServerError, "%v", err)
	}
	n := len(own) + others
	if n == 0 && modelErr == nil {
		return allowed()
	}
	desc := "ServiceEncryptionKeys"
	if n > 0 {
		desc = countKeys(own, others)
	}
	return deny("Account", key.Name, fieldErr("metadata.name", hierarchy.RuleAccountInUse,
		"account %q is still referenced by %s; delete them first", key.String(), desc))
}

// countKeys describes the keys using an Account: "1 ServiceEncryptionKey (ns/k)", "3 ServiceEncryptionKeys (ns/a,
// ns/b and 1 in another tenant's namespace)".
func countKeys(own []string, others int) string {
	n := len(own) + others
	noun := "ServiceEncryptionKeys"
	if n == 1 {
		noun = "ServiceEncryptionKey"
	}
	const maxNamed = 5
	shown := own
	hidden := others
	if len(shown) > maxNamed {
		hidden += len(shown) - maxNamed
		shown = shown[:maxNamed]
	}
	parts := strings.Join(shown, ", ")
	if hidden > 0 {
		more := fmt.Sprintf("%d not named (other tenants' namespaces or beyond the first %d)", hidden, maxNamed)
		if parts == "" {
			parts = more
		} else {
			parts += " and " + more
		}
	}
	return fmt.Sprintf("%d %s (%s)", n, noun, parts)
}

// probe asks the keystore, within the probe budget, whether the L1 key exists. A definitive "not found" denies the
// write; an unreachable keystore only warns, so a keystore outage never blocks tenants (the Account simply stays
// not Ready until the reconciler proves the key).
func (h *Handlers) probe(ctx context.Context, a *cmkv1.Account) (string, *admission.Response) {
	ctx, cancel := context.WithTimeout(ctx, h.ProbeTimeout)
	defer cancel()
	err := h.Keys.ProbeKey(ctx, a)
	switch {
	case err == nil:
		return "", nil
	case errors.Is(err, ErrKeyNotFound):
		r := deny("Account", a.Name, fieldErr("spec.keyRef", RuleKeyNotFound,
			"L1 key %q does not exist in keystore %q", truncate(a.Spec.KeyRef), a.Spec.Keystore))
		return "", &r
	case errors.Is(err, keychain.ErrTenantBinding):
		// The keystore refused this Account's own role or key for its tenant (e.g. another tenant's IAM role): a
		// verdict about the Account, not an outage, so it denies like a missing key.
		r := deny("Account", a.Name, fieldErr("spec", RuleTenantBinding,
			"keystore %q refused the Account's credentials for its tenant: %s", a.Spec.Keystore, truncateMsg(err.Error())))
		return "", &r
	default:
		return fmt.Sprintf("L1 key %q could not be verified yet (%s); the Account stays not Ready until it answers",
			truncate(a.Spec.KeyRef), shortErr(err)), nil
	}
}

func shortErr(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "keystore did not answer in time"
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// truncateMsg bounds a backend's explanation in a denial (it is longer than a field value, so truncate's limit is
// too tight).
func truncateMsg(s string) string {
	const max = 400
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
