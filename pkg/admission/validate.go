package admission

import (
	"context"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// ownedRequest is what the validate prologue of a namespaced kind hands to the kind's own checks.
type ownedRequest[T client.Object] struct {
	ctx   context.Context // marked for dry runs (withDryRun)
	obj   T
	old   T // set on UPDATE only
	owner string
}

// ownedHooks are the places where a kind departs from the common prologue.
type ownedHooks[T client.Object] struct {
	// onDelete answers a DELETE (nil: deletes are allowed without checks).
	onDelete func(ctx context.Context) admission.Response
	// early may answer an UPDATE before the ownership checks (nil: never), e.g. the update removing the last
	// finalizer of a terminating Account, which is judged like its delete.
	early func(ctx context.Context, obj, old T) *admission.Response
}

// validateOwned is the prologue every namespaced kind's validation shares, in this order (mutateOwned is its
// mutating twin): the request is for the kind this endpoint serves; a dry run is marked on the context, so that
// nothing below writes; DELETE goes to the kind's delete check and any other operation but CREATE and UPDATE is
// allowed; the object (and on UPDATE the old object) decodes; then ownedWrite: the owner comes from the namespace
// and matches the ownership label, the owning tenant exists (and, on create, is not terminating), and the caller may
// write that tenant's objects. A non-nil response is the answer.
func validateOwned[T client.Object](ctx context.Context, h *Handlers, req admission.Request, kind string, newObj func() T, hooks ownedHooks[T]) (*ownedRequest[T], *admission.Response) {
	if r := expectKind(req, cmkv1.GroupVersion.Group, kind); r != nil {
		return nil, r
	}
	ctx = withDryRun(ctx, req)
	if req.Operation == admissionv1.Delete && hooks.onDelete != nil {
		r := hooks.onDelete(ctx)
		return nil, &r
	}
	if !isWrite(req.Operation) {
		r := admission.Allowed("")
		return nil, &r
	}
	out := &ownedRequest[T]{ctx: ctx, obj: newObj()}
	if err := decode(req.Object.Raw, out.obj); err != nil {
		r := badRequest("%s: %v", kind, err)
		return nil, &r
	}
	if req.Operation == admissionv1.Update {
		out.old = newObj()
		if err := decode(req.OldObject.Raw, out.old); err != nil {
			r := badRequest("%s (old object): %v", kind, err)
			return nil, &r
		}
		if hooks.early != nil {
			if r := hooks.early(ctx, out.obj, out.old); r != nil {
				return nil, r
			}
		}
	}
	owner, r := h.ownedWrite(ctx, req, kind, out.obj.GetName(), out.obj.GetLabels())
	if r != nil {
		return nil, r
	}
	out.owner = owner
	return out, nil
}
