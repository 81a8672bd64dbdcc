package admission

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// ValidateServiceEncryptionKey enforces FR-4.3: the referenced Account must belong to the key owner's tenant
// hierarchy (itself, an ancestor, or a shadow of either; see docs/hierarchy.md). The binding is immutable and the
// workload identities must be well-formed SPIFFE IDs.
func (h *Handlers) ValidateServiceEncryptionKey(ctx context.Context, req admission.Request) admission.Response {
	r, resp := validateOwned(ctx, h, req, "ServiceEncryptionKey", func() *cmkv1.ServiceEncryptionKey { return &cmkv1.ServiceEncryptionKey{} }, ownedHooks[*cmkv1.ServiceEncryptionKey]{})
	if resp != nil {
		return *resp
	}
	ctx, k, owner := r.ctx, r.obj, r.owner
	var errs field.ErrorList
	if old := r.old; old != nil {
		errs = append(errs, immutable("spec.accountRef.name", old.Spec.AccountRef.Name, k.Spec.AccountRef.Name)...)
		if old.Spec.AccountRef.Namespace != "" {
			errs = append(errs, immutable("spec.accountRef.namespace", old.Spec.AccountRef.Namespace, k.Spec.AccountRef.Namespace)...)
		}
		errs = append(errs, immutable("spec.algorithm", string(old.Spec.Algorithm), string(k.Spec.Algorithm))...)
	}
	accNS := k.Spec.AccountRef.Namespace
	if accNS == "" {
		accNS = req.Namespace
	}
	key := hierarchy.AccountKey{Namespace: accNS, Name: k.Spec.AccountRef.Name}
	// The Account delete check finds keys by this label, so a key without it (written around the mutating webhook)
	// could outlive its Account.
	switch got, ok := k.Labels[AccountRefLabel]; {
	case !ok:
		errs = append(errs, invalid("metadata.labels["+AccountRefLabel+"]", RuleLabelMissing,
			"is missing (the mutating webhook stamps it; is it registered?)"))
	case got != AccountRefValue(key):
		errs = append(errs, invalid("metadata.labels["+AccountRefLabel+"]", RuleLabelMismatch,
			"value %q does not match spec.accountRef %s (%q)", truncate(got), key, AccountRefValue(key)))
	}
	if fe, r := h.checkAccountRef(ctx, owner, key, req.Operation == admissionv1.Create); r != nil {
		return *r
	} else if fe != nil {
		errs = append(errs, fe)
	}
	for i, id := range k.Spec.WorkloadIdentities {
		if err := h.checkSPIFFEID(id); err != nil {
			errs = append(errs, invalid(fmt.Sprintf("spec.workloadIdentities[%d]", i), RuleSPIFFEID, "%q: %v", truncate(id), err))
		}
	}
	if len(errs) > 0 {
		return denyErrs("ServiceEncryptionKey", k.Name, errs)
	}
	return allowed()
}

// checkAccountRef decides whether tenant owner may use Account key. Every "no" gets the same answer, whatever the
// reason (the Account does not exist, is terminating, or belongs to a tenant outside the owner's allowed set): a
// tenant must not learn from a denial, not even from a dry run, whether another tenant's Account exists or who owns
// a namespace it cannot read. On create (a new reference) the Account is read live, so that a terminating Account,
// which the model still holds until its finalizers are gone, is never given a new key.
func (h *Handlers) checkAccountRef(ctx context.Context, owner string, key hierarchy.AccountKey, create bool) (*field.Error, *admission.Response) {
	unusable := invalid("spec.accountRef", RuleAccountUnusable,
		"account %q is not found or not usable by tenant %q (it must exist, not be terminating, and belong to %q, an ancestor, or a shadow of either)",
		truncate(key.String()), owner, owner)
	key = h.Dir.accountKey(ctx, key) // the Source's model key (kcp: qualified by workspace); identity otherwise
	if create {
		state, _, err := h.Dir.LiveAccountState(ctx, key)
		if err != nil {
			r := errored(http.StatusInternalServerError, "checking the account reference: %v", err)
			return nil, &r
		}
		if state != stateLive {
			return unusable, nil
		}
	}
	if err := h.Dir.EnsureAccount(ctx, key); err != nil {
		r := errored(http.StatusInternalServerError, "checking the account reference: %v", err)
		return nil, &r
	}
	if err := h.Dir.Model.MayReferenceAccount(owner, key); err != nil {
		if _, ok := fromRule(err, "spec.accountRef"); !ok {
			r := errored(http.StatusInternalServerError, "checking the account reference: %v", err)
			return nil, &r
		}
		return unusable, nil
	}
	return nil, nil
}

// checkSPIFFEID validates a SPIFFE ID per the SPIFFE ID specification: scheme spiffe, a lower-case trust domain of
// [a-z0-9.-_], a path of non-empty segments of [A-Za-z0-9.-_] that are not "." or "..", no query, fragment, port or
// user info, at most 2048 bytes.
func (h *Handlers) checkSPIFFEID(id string) error {
	const prefix = "spiffe://"
	if len(id) > 2048 {
		return fmt.Errorf("longer than 2048 bytes")
	}
	if !strings.HasPrefix(id, prefix) {
		return fmt.Errorf("must start with %s", prefix)
	}
	rest := id[len(prefix):]
	td, path, _ := strings.Cut(rest, "/")
	if td == "" {
		return fmt.Errorf("trust domain is empty")
	}
	for _, r := range td {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("trust domain has character %q (allowed: a-z 0-9 . - _)", r)
		}
	}
	if len(h.TrustDomains) > 0 && !slices.Contains(h.TrustDomains, td) {
		return fmt.Errorf("trust domain %q is not trusted", td)
	}
	if path == "" {
		return fmt.Errorf("a workload identity needs a path")
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("path segment %q is not allowed", seg)
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
				return fmt.Errorf("path has character %q (allowed: A-Z a-z 0-9 . - _)", r)
			}
		}
	}
	return nil
}
