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
)

// ValidateAccount checks ownership, the immutability of the key binding and (on create) that the referenced L1 key
// exists. Its region is the keystore's own (e.g. an AWS region), not a Platform Mesh region, so the region policy
// does not apply; deletes are refused while ServiceEncryptionKeys still use the Account.
func (h *Handlers) ValidateAccount(ctx context.Context, req admission.Request) admission.Response {
	if r := expectKind(req, cmkv1.GroupVersion.Group, "Account"); r != nil {
		return *r
	}
	if req.Operation == admissionv1.Delete {
		key := hierarchy.AccountKey{Namespace: req.Namespace, Name: req.Name}
		owner, err := h.Dir.TenantOfNamespace(ctx, req.Namespace)
		switch {
		case err == nil:
			if r := h.authorize(ctx, req, "Account", req.Name, owner, ActionDelete); r != nil {
				return *r
			}
		case !errors.Is(err, ErrNoTenant):
			return errored(http.StatusInternalServerError, "resolving the owner of namespace %q: %v", req.Namespace, err)
		}
		if err := h.Dir.Model.ValidateAccountDelete(key); err != nil {
			if fe, ok := ruleErr(err, "metadata.name"); ok {
				return deny("Account", req.Name, fe)
			}
			return errored(http.StatusInternalServerError, "validating delete: %v", err)
		}
		// The informers may not have seen a key created a moment ago: confirm with one indexed live query.
		keys, err := h.Dir.LiveKeysOf(ctx, key, 5)
		if err != nil {
			return errored(http.StatusInternalServerError, "%v", err)
		}
		if len(keys) > 0 {
			return deny("Account", req.Name, fieldErr("metadata.name", "H-ACCOUNT-IN-USE",
				"account %q is still referenced by ServiceEncryptionKeys (%s)", key.String(), strings.Join(keys, ", ")))
		}
		return allowed()
	}
	if !isWrite(req.Operation) {
		return admission.Allowed("")
	}
	var a cmkv1.Account
	if err := decode(req.Object.Raw, &a); err != nil {
		return badRequest("Account: %v", err)
	}
	owner, r := h.ownerFor(ctx, "Account", req.Namespace, a.Name, a.Labels, false)
	if r != nil {
		return *r
	}
	if r := h.requireTenant(ctx, "Account", a.Name, owner); r != nil {
		return *r
	}
	if r := h.authorize(ctx, req, "Account", a.Name, owner, ActionWrite); r != nil {
		return *r
	}
	var errs []FieldError
	if a.Spec.Auth != nil && a.Spec.Keystore == cmkv1.KeystoreAWS && a.Spec.Auth.SecretRef != nil {
		errs = append(errs, fieldErr("spec.auth.secretRef", "A-STATIC-CREDENTIALS", "aws Accounts authenticate with IRSA only; static credentials are refused"))
	}
	if req.Operation == admissionv1.Update {
		var old cmkv1.Account
		if err := decode(req.OldObject.Raw, &old); err != nil {
			return badRequest("Account (old object): %v", err)
		}
		errs = append(errs, immutable("spec.keystore", string(old.Spec.Keystore), string(a.Spec.Keystore))...)
		errs = append(errs, immutable("spec.keyRef", old.Spec.KeyRef, a.Spec.KeyRef)...)
	}
	if len(errs) > 0 {
		return deny("Account", a.Name, errs...)
	}
	var warnings []string
	if req.Operation == admissionv1.Create && h.Keys != nil {
		if w, deny := h.probe(ctx, &a); deny != nil {
			return *deny
		} else if w != "" {
			warnings = append(warnings, w)
		}
	}
	return allowed(warnings...)
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
		r := deny("Account", a.Name, fieldErr("spec.keyRef", "A-KEY-NOT-FOUND",
			"L1 key %q does not exist in keystore %q", truncate(a.Spec.KeyRef), a.Spec.Keystore))
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
