package kcp

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	tenancyv1alpha1 "github.com/kcp-dev/kcp/sdk/apis/tenancy/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// LiveReader is the webhook's live reader (admission.Directory.Live) on kcp: the point reads admission makes when
// the watch has not delivered something yet, or when it must know whether a referenced object is terminating,
// translated from the hierarchy model's keys to one request in the right workspace.
//
//   - A Tenant named id is the workspace at Options.TenantPath(id), read from its parent workspace; the answer is
//     the tenant that workspace yields (Root / Nested / Shadow, as the graph derives it) and carries the
//     workspace's deletion timestamp, so admission refuses new objects in a terminating workspace.
//   - An Account is keyed "<logical cluster>/<namespace>" + name in the model; it is read in that logical cluster.
//
// Lists are served from the watch, not live: on kcp they would span every workspace (the Account namespace/name
// "keys/main" is in every tenant), which is too costly for an admission request. They return an empty list, which
// leaves the verdict to the model, exactly as without a live reader.
type LiveReader struct {
	base *rest.Config
	opts Options
	hc   *http.Client
}

// NewLiveReader returns a live reader for the kcp at base (an identity that may read Workspaces and Accounts in
// every workspace).
func NewLiveReader(base *rest.Config, opts Options) (*LiveReader, error) {
	opts.defaults()
	hc, err := rest.HTTPClientFor(base)
	if err != nil {
		return nil, fmt.Errorf("kcp live reader: %w", err)
	}
	return &LiveReader{base: base, opts: opts, hc: hc}, nil
}

func (r *LiveReader) client(cluster string) (dynamic.Interface, error) {
	return dynamic.NewForConfigAndClient(ForCluster(r.base, cluster), r.hc)
}

// Get implements client.Reader for Tenants and Accounts.
func (r *LiveReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	switch o := obj.(type) {
	case *cmkv1.Tenant:
		return r.tenant(ctx, key.Name, o)
	case *cmkv1.Account:
		cluster, ns, ok := strings.Cut(key.Namespace, "/")
		if !ok || cluster == "" || ns == "" {
			return apierrors.NewNotFound(AccountsGVR.GroupResource(), key.Name)
		}
		dc, err := r.client(cluster)
		if err != nil {
			return err
		}
		u, err := dc.Resource(AccountsGVR).Namespace(ns).Get(ctx, key.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, o); err != nil {
			return fmt.Errorf("decoding account %s/%s: %w", ns, key.Name, err)
		}
		o.Namespace = key.Namespace // the model's key, as the caller asked
		return nil
	case *metav1.PartialObjectMetadata:
		// Liveness checks read metadata only (deletion state, labels): answer from the full read.
		var full client.Object
		switch o.GroupVersionKind() {
		case cmkv1.GroupVersion.WithKind("Tenant"):
			full = &cmkv1.Tenant{}
		case cmkv1.GroupVersion.WithKind("Account"):
			full = &cmkv1.Account{}
		default:
			return fmt.Errorf("the kcp live reader does not read %s", o.GroupVersionKind())
		}
		if err := r.Get(ctx, key, full); err != nil {
			return err
		}
		gvk := o.GroupVersionKind()
		full.(metav1.ObjectMetaAccessor).GetObjectMeta().(*metav1.ObjectMeta).DeepCopyInto(&o.ObjectMeta)
		o.SetGroupVersionKind(gvk)
		return nil
	default:
		return fmt.Errorf("the kcp live reader does not read %T", obj)
	}
}

func (r *LiveReader) tenant(ctx context.Context, id string, out *cmkv1.Tenant) error {
	notFound := apierrors.NewNotFound(cmkv1.GroupVersion.WithResource("tenants").GroupResource(), id)
	if id == "" || strings.ContainsAny(id, ":/") {
		return notFound
	}
	path := r.opts.TenantPath(id)
	if !r.opts.IsTenantPath(path) {
		return notFound
	}
	parent := parentPath(path)
	dc, err := r.client(parent)
	if err != nil {
		return err
	}
	u, err := dc.Resource(WorkspacesGVR).Get(ctx, path[len(parent)+1:], metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return notFound
	}
	if err != nil {
		return fmt.Errorf("reading workspace %s: %w", path, err)
	}
	var ws tenancyv1alpha1.Workspace
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ws); err != nil {
		return fmt.Errorf("decoding workspace %s: %w", path, err)
	}
	*out = cmkv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: id, UID: ws.UID, DeletionTimestamp: ws.DeletionTimestamp}}
	switch shadow := ws.Annotations[AnnotationShadowOf]; {
	case shadow != "":
		out.Spec.Type = cmkv1.TenantType(hierarchy.Shadow)
		out.Spec.ShadowOf = shadow
		if sid, ok := r.opts.TenantID(shadow); ok {
			out.Spec.ShadowOf = sid
		}
	default:
		if pid, ok := r.opts.TenantID(parent); ok {
			out.Spec.Type, out.Spec.Parent = cmkv1.TenantType(hierarchy.Nested), pid
		} else {
			out.Spec.Type = cmkv1.TenantType(hierarchy.Root)
		}
	}
	return nil
}

// List implements client.Reader: lists come from the watch (see LiveReader), so the list stays empty.
func (r *LiveReader) List(context.Context, client.ObjectList, ...client.ListOption) error { return nil }
