package admission

import (
	"context"
	"net/http"
	"slices"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// labelPatch returns the JSON patch operations that add the labels of want that are missing (empty values are
// skipped). It never replaces a label the writer set: a wrong value is left for the validating webhook to deny,
// so a writer learns that ownership is not theirs to choose instead of having it silently rewritten.
// Hand-written operations (instead of diffing re-marshalled objects) never touch fields the handler did not mean
// to change, such as unknown fields a newer client sent.
func labelPatch(labels map[string]string, want map[string]string) []jsonpatch.JsonPatchOperation {
	var ops []jsonpatch.JsonPatchOperation
	if labels == nil {
		add := map[string]any{}
		for k, v := range want {
			if v != "" {
				add[k] = v
			}
		}
		if len(add) > 0 {
			ops = append(ops, jsonpatch.NewOperation("add", "/metadata/labels", add))
		}
		return ops
	}
	for _, k := range sortedKeys(want) {
		if _, ok := labels[k]; !ok && want[k] != "" {
			ops = append(ops, jsonpatch.NewOperation("add", "/metadata/labels/"+jsonPointerEscape(k), want[k]))
		}
	}
	return ops
}

// finalizerPatch adds finalizer f on CREATE when it is set and missing. The in-use finalizer is stamped here (rather
// than later by its controller) so that a Tenant or Account is protected from the moment it exists: a delete racing
// with a dependent's create then only marks it terminating, and the in-use controller keeps it while anything
// depends on it.
func finalizerPatch(op admissionv1.Operation, finalizers []string, f string) []jsonpatch.JsonPatchOperation {
	if f == "" || op != admissionv1.Create || slices.Contains(finalizers, f) {
		return nil
	}
	if len(finalizers) == 0 {
		return []jsonpatch.JsonPatchOperation{jsonpatch.NewOperation("add", "/metadata/finalizers", []string{f})}
	}
	return []jsonpatch.JsonPatchOperation{jsonpatch.NewOperation("add", "/metadata/finalizers/-", f)}
}

func patched(ops []jsonpatch.JsonPatchOperation) admission.Response {
	if len(ops) == 0 {
		return admission.Allowed("")
	}
	return admission.Patched("", ops...)
}

// MutateTenant stamps the labels derived from a Tenant's immutable spec: its own ID (so that tenants and their
// namespaced objects can be selected alike), its parent and its shadow target (indexed queries for delete checks).
func (h *Handlers) MutateTenant(_ context.Context, req admission.Request) admission.Response {
	if r := expectKind(req, cmkv1.GroupVersion.Group, "Tenant"); r != nil {
		return *r
	}
	if !isWrite(req.Operation) {
		return admission.Allowed("")
	}
	var t cmkv1.Tenant
	if err := decode(req.Object.Raw, &t); err != nil {
		return badRequest("Tenant: %v", err)
	}
	ops := labelPatch(t.Labels, map[string]string{
		cmkv1.TenantLabel: t.Name,
		ParentLabel:       t.Spec.Parent,
		ShadowOfLabel:     t.Spec.ShadowOf,
	})
	return patched(append(ops, finalizerPatch(req.Operation, t.Finalizers, h.InUseFinalizer)...))
}

// namespacedMeta is the part of a namespaced object the mutating handlers need.
type namespacedMeta struct {
	Metadata struct {
		Name       string            `json:"name"`
		Namespace  string            `json:"namespace"`
		Labels     map[string]string `json:"labels"`
		Finalizers []string          `json:"finalizers"`
	} `json:"metadata"`
}

// mutateOwned stamps the ownership label of a namespaced object from its namespace's tenant.
func (h *Handlers) mutateOwned(ctx context.Context, req admission.Request, kind string, extra func(raw []byte) ([]jsonpatch.JsonPatchOperation, error)) admission.Response {
	if r := expectKind(req, cmkv1.GroupVersion.Group, kind); r != nil {
		return *r
	}
	if !isWrite(req.Operation) {
		return admission.Allowed("")
	}
	var m namespacedMeta
	if err := decode(req.Object.Raw, &m); err != nil {
		return badRequest("%s: %v", kind, err)
	}
	ns := req.Namespace
	if ns == "" {
		ns = m.Metadata.Namespace
	}
	owner, r := h.ownerFor(ctx, kind, ns, req.Name, m.Metadata.Labels, true)
	if r != nil {
		return *r
	}
	ops := labelPatch(m.Metadata.Labels, map[string]string{cmkv1.TenantLabel: owner})
	if kind == "Account" {
		ops = append(ops, finalizerPatch(req.Operation, m.Metadata.Finalizers, h.InUseFinalizer)...)
	}
	if extra != nil {
		more, err := extra(req.Object.Raw)
		if err != nil {
			return errored(http.StatusBadRequest, "%s: %v", kind, err)
		}
		ops = append(ops, more...)
	}
	return patched(ops)
}

// MutateAccount stamps the ownership label.
func (h *Handlers) MutateAccount(ctx context.Context, req admission.Request) admission.Response {
	return h.mutateOwned(ctx, req, "Account", nil)
}

// MutateWebHookNotification stamps the ownership label.
func (h *Handlers) MutateWebHookNotification(ctx context.Context, req admission.Request) admission.Response {
	return h.mutateOwned(ctx, req, "WebHookNotification", nil)
}

// MutateServiceEncryptionKey stamps the ownership label, makes an implicit account namespace explicit (so the stored
// object says exactly which Account it is bound to) and stamps the account-ref label that Account deletes query.
func (h *Handlers) MutateServiceEncryptionKey(ctx context.Context, req admission.Request) admission.Response {
	return h.mutateOwned(ctx, req, "ServiceEncryptionKey", func(raw []byte) ([]jsonpatch.JsonPatchOperation, error) {
		var k cmkv1.ServiceEncryptionKey
		if err := decode(raw, &k); err != nil {
			return nil, err
		}
		// Without spec.accountRef (or its name) the operations below have no parent to land in and the whole patch
		// would fail to apply (an API server error instead of the schema's "required" message); the schema and the
		// validating webhook report the missing reference.
		if k.Spec.AccountRef.Name == "" {
			return nil, nil
		}
		var ops []jsonpatch.JsonPatchOperation
		accNS := k.Spec.AccountRef.Namespace
		if accNS == "" {
			accNS = req.Namespace
			if accNS == "" {
				accNS = k.Namespace
			}
			ops = append(ops, jsonpatch.NewOperation("add", "/spec/accountRef/namespace", accNS))
		}
		if _, ok := k.Labels[AccountRefLabel]; !ok {
			// mutateOwned always creates the labels map first when it is missing (the owner label is never empty).
			ops = append(ops, jsonpatch.NewOperation("add", "/metadata/labels/"+jsonPointerEscape(AccountRefLabel),
				AccountRefValue(hierarchy.AccountKey{Namespace: accNS, Name: k.Spec.AccountRef.Name})))
		}
		return ops, nil
	})
}
