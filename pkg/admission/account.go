package admission

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// ValidateAccount checks ownership, the immutability of the key binding and (on create) that the referenced L1 key
// exists. Its region is the keystore's own (e.g. an AWS region), not a Platform Mesh region, so the region policy
// does not apply; deletes are refused while ServiceEncryptionKeys still use the Account.
func (h *Handlers) ValidateAccount(ctx context.Context, req admission.Request) admission.Response {
	r, resp := validateOwned(ctx, h, req, "Account", func() *cmkv1.Account { return &cmkv1.Account{} }, ownedHooks[*cmkv1.Account]{
		onDelete: func(ctx context.Context) admission.Response { return h.validateAccountDelete(ctx, req) },
		early: func(ctx context.Context, a, old *cmkv1.Account) *admission.Response {
			if !lastFinalizerRemoved(old, a) {
				return nil
			}
			resp := h.accountDeleteChecks(ctx, h.Dir.accountKey(ctx, hierarchy.AccountKey{Namespace: req.Namespace, Name: a.Name}))
			return &resp
		},
	})
	if resp != nil {
		return *resp
	}
	ctx, a, old := r.ctx, r.obj, r.old
	var errs field.ErrorList
	if a.Spec.Auth != nil && a.Spec.Keystore == cmkv1.KeystoreAWS && a.Spec.Auth.SecretRef != nil {
		errs = append(errs, invalid("spec.auth.secretRef", RuleStaticCredentials, "aws Accounts authenticate with IRSA only; static credentials are refused"))
	}
	if req.Operation == admissionv1.Update {
		errs = append(errs, immutable("spec.keystore", string(old.Spec.Keystore), string(a.Spec.Keystore))...)
		errs = append(errs, immutable("spec.keyRef", old.Spec.KeyRef, a.Spec.KeyRef)...)
	}
	if len(errs) > 0 {
		return denyErrs("Account", a.Name, errs)
	}
	var warnings []string
	if req.Operation == admissionv1.Create && h.Keys != nil {
		if w, deny := h.probe(ctx, a); deny != nil {
			return *deny
		} else if w != "" {
			warnings = append(warnings, w)
		}
	}
	return allowed(warnings...)
}

// validateAccountDelete checks the caller's permission on the owning tenant (when the namespace still has one) and
// then that no ServiceEncryptionKey uses the Account.
func (h *Handlers) validateAccountDelete(ctx context.Context, req admission.Request) admission.Response {
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

// accountDeleteChecks refuses to let Account key go while ServiceEncryptionKeys still use it. It runs on the DELETE
// and again on the UPDATE that removes the last finalizer of a terminating Account. The denial names only the keys
// in namespaces of the Account's own tenant; keys of other tenants (descendants, shadows) are counted, never named.
func (h *Handlers) accountDeleteChecks(ctx context.Context, key hierarchy.AccountKey) admission.Response {
	modelErr := h.Dir.Model.ValidateAccountDelete(key)
	if modelErr != nil {
		if _, ok := fromRule(modelErr, "metadata.name"); !ok {
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
	return denyOne("Account", key.Name, invalid("metadata.name", hierarchy.RuleAccountInUse,
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
		r := denyOne("Account", a.Name, invalid("spec.keyRef", RuleKeyNotFound,
			"L1 key %q does not exist in keystore %q", truncate(a.Spec.KeyRef), a.Spec.Keystore))
		return "", &r
	case errors.Is(err, keychain.ErrKeyDisabled):
		// The key exists but cannot be used (disabled, pending deletion): like a missing key, a verdict about the
		// Account that no retry changes until the key's owner enables it. Only the state name is quoted.
		state := "no state reported"
		var se *keychain.KeyStateError
		if errors.As(err, &se) && se.State != "" {
			state = "state " + se.State
		}
		r := denyOne("Account", a.Name, invalid("spec.keyRef", RuleKeyNotEnabled,
			"L1 key %q in keystore %q is not enabled (%s); enable it in the keystore (or cancel its deletion) and retry", truncate(a.Spec.KeyRef), a.Spec.Keystore, state))
		return "", &r
	case errors.Is(err, keychain.ErrTenantBinding):
		// The keystore refused this Account's own role or key for its tenant (e.g. another tenant's IAM role): a
		// verdict about the Account, not an outage, so it denies like a missing key.
		r := denyOne("Account", a.Name, invalid("spec", RuleTenantBinding,
			"keystore %q refused the Account's credentials for its tenant: %s", a.Spec.Keystore, truncateMsg(err.Error())))
		return "", &r
	default:
		// The cause comes first: the API server's guidance keeps warnings short (allowed cuts them at 120
		// characters), and a key reference such as a KMS ARN would otherwise push the cause out.
		return fmt.Sprintf("L1 key not verified yet (%s); the Account stays not Ready until it answers: %s",
			shortErr(err), truncate(a.Spec.KeyRef)), nil
	}
}

func shortErr(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "keystore did not answer in time"
	}
	// Wrapped errors end with their root cause ("…: dial tcp …: connection refused"), so a long one keeps its tail.
	s := err.Error()
	if len(s) > 60 {
		cut := len(s) - 57
		for cut < len(s) && !utf8.RuneStart(s[cut]) {
			cut++
		}
		s = "..." + s[cut:]
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
