package kcp

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// This file gives the alert handler (pkg/alerts) its kcp view: the Events our controllers write into each object's
// workspace and the tenants' WebHookNotifications, both listed and watched across all workspaces through one
// wildcard (/clusters/*) connection each, plus a client for reads and status writes in one workspace.

// WebHookNotificationsGVR is the tenants' webhook targets.
var WebHookNotificationsGVR = cmkv1.GroupVersion.WithResource("webhooknotifications")

// ClusterOf returns the logical cluster an object of a wildcard list or watch lives in ("" when kcp did not say).
func ClusterOf(o metav1.Object) string { return o.GetAnnotations()[AnnotationCluster] }

// UnqualifiedName returns the object's name as in its workspace: the list-watches below prefix names with the
// logical cluster so that an informer (keyed by namespace/name) keeps objects of different workspaces apart.
func UnqualifiedName(o metav1.Object) string { return name(o) }

// EventsListWatch lists and watches core/v1 Events about objects of our API group in every workspace. Items are
// *corev1.Event with qualified names (UnqualifiedName undoes it) and the kcp.io/cluster annotation.
func EventsListWatch(base *rest.Config) (toolscache.ListerWatcher, error) {
	sel := fields.OneTermEqualSelector("involvedObject.apiVersion", cmkv1.GroupVersion.String()).String()
	return typedListWatch(base, eventsGVR, sel, func() runtime.Object { return &corev1.Event{} },
		func() runtime.Object { return &corev1.EventList{} })
}

// WebHookNotificationsListWatch lists and watches WebHookNotifications in every workspace; items are
// *cmkv1.WebHookNotification with qualified names. kcp serves a CustomResource across workspaces as metadata only
// (each workspace may define its own schema), so the watch runs on metadata and every added or changed object is
// read in full from its own workspace (targets change rarely; each read is bounded by timeout).
func WebHookNotificationsListWatch(base *rest.Config, timeout time.Duration) (toolscache.ListerWatcher, error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	mc, err := metadata.NewForConfig(Wildcard(base))
	if err != nil {
		return nil, fmt.Errorf("kcp wildcard metadata client: %w", err)
	}
	ri := mc.Resource(WebHookNotificationsGVR)
	full := func(ctx context.Context, m *metav1.PartialObjectMetadata) (*cmkv1.WebHookNotification, error) {
		lc := ClusterOf(m)
		if lc == "" {
			return nil, fmt.Errorf("WebHookNotification %s carries no logical cluster", m.Name)
		}
		dc, err := dynamic.NewForConfig(ForCluster(base, lc))
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		u, err := dc.Resource(WebHookNotificationsGVR).Namespace(m.Namespace).Get(ctx, m.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		var w cmkv1.WebHookNotification
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &w, false); err != nil {
			return nil, fmt.Errorf("decoding WebHookNotification %s/%s in %s: %w", m.Namespace, m.Name, lc, err)
		}
		w.ManagedFields = nil
		if w.Annotations == nil {
			w.Annotations = map[string]string{}
		}
		w.Annotations[AnnotationCluster] = lc
		qualify(&w)
		return &w, nil
	}
	return &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := ri.List(ctx, o)
			if apierrors.IsNotFound(err) {
				return &cmkv1.WebHookNotificationList{}, nil // no workspace defines the kind yet
			}
			if err != nil {
				return nil, err
			}
			out := &cmkv1.WebHookNotificationList{ListMeta: metav1.ListMeta{ResourceVersion: l.ResourceVersion}}
			for i := range l.Items {
				w, err := full(ctx, &l.Items[i])
				if err != nil {
					continue // gone meanwhile, or unreadable: the next change to it brings it back
				}
				out.Items = append(out.Items, *w)
			}
			return out, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			wi, err := ri.Watch(ctx, o)
			if err != nil {
				return nil, err
			}
			return watch.Filter(wi, func(e watch.Event) (watch.Event, bool) {
				m, ok := e.Object.(*metav1.PartialObjectMetadata)
				if !ok || e.Type == watch.Error {
					return e, true
				}
				// Bookmarks (the end of a streamed initial list among them) must carry the informer's type too.
				if e.Type == watch.Deleted || e.Type == watch.Bookmark {
					w := &cmkv1.WebHookNotification{ObjectMeta: *m.ObjectMeta.DeepCopy()}
					qualify(w)
					e.Object = w
					return e, true
				}
				w, err := full(ctx, m)
				if err != nil {
					return e, false
				}
				e.Object = w
				return e, true
			}), nil
		},
	}, nil
}

// typedListWatch reads through the dynamic client (kcp's wildcard endpoints speak plain JSON) and hands the
// informer typed objects, so consumers need no unstructured handling.
func typedListWatch(base *rest.Config, gvr schema.GroupVersionResource, fieldSelector string, newObj, newList func() runtime.Object) (toolscache.ListerWatcher, error) {
	dc, err := dynamic.NewForConfig(Wildcard(base))
	if err != nil {
		return nil, fmt.Errorf("kcp wildcard client for %s: %w", gvr.Resource, err)
	}
	ri := dc.Resource(gvr)
	convert := func(u *unstructured.Unstructured) (runtime.Object, error) {
		o := newObj()
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, o, false); err != nil {
			return nil, fmt.Errorf("decoding %s %s: %w", gvr.Resource, u.GetName(), err)
		}
		if m, err := meta.Accessor(o); err == nil {
			m.SetManagedFields(nil)
			qualify(m)
		}
		return o, nil
	}
	return &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			if fieldSelector != "" {
				o.FieldSelector = fieldSelector
			}
			ul, err := ri.List(ctx, o)
			if err != nil {
				return nil, err
			}
			items := make([]runtime.Object, 0, len(ul.Items))
			for i := range ul.Items {
				obj, err := convert(&ul.Items[i])
				if err != nil {
					continue // one undecodable object must not stop the intake of all others
				}
				items = append(items, obj)
			}
			list := newList()
			if err := meta.SetList(list, items); err != nil {
				return nil, err
			}
			if la, err := meta.ListAccessor(list); err == nil {
				la.SetResourceVersion(ul.GetResourceVersion())
			}
			return list, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			if fieldSelector != "" {
				o.FieldSelector = fieldSelector
			}
			w, err := ri.Watch(ctx, o)
			if err != nil {
				return nil, err
			}
			return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
				u, ok := e.Object.(*unstructured.Unstructured)
				if !ok || e.Type == watch.Error {
					return e, true
				}
				obj, err := convert(u) // bookmarks too: the informer refuses objects of another type
				if err != nil {
					return e, false
				}
				e.Object = obj
				return e, true
			}), nil
		},
	}, nil
}

// WorkspaceClients hands out clients scoped to one logical cluster, for the alert handler's signing Secret reads
// and WebHookNotification status writes. The mapping is fixed (the product CRDs are the same in every workspace),
// so no discovery round is made per workspace.
type WorkspaceClients struct {
	base   *rest.Config
	scheme *runtime.Scheme
	mapper meta.RESTMapper
	http   *http.Client
}

// NewWorkspaceClients prepares clients for the kcp at base.
func NewWorkspaceClients(base *rest.Config) (*WorkspaceClients, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := cmkv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	hc, err := rest.HTTPClientFor(base)
	if err != nil {
		return nil, fmt.Errorf("kcp workspace clients: %w", err)
	}
	m := meta.NewDefaultRESTMapper(nil)
	for gvk, res := range map[schema.GroupVersionKind]string{
		cmkv1.GroupVersion.WithKind("WebHookNotification"): "webhooknotifications",
		corev1.SchemeGroupVersion.WithKind("Secret"):       "secrets",
	} {
		gv := gvk.GroupVersion()
		m.AddSpecific(gvk, gv.WithResource(res), gv.WithResource(strings.ToLower(gvk.Kind)), meta.RESTScopeNamespace)
	}
	return &WorkspaceClients{base: base, scheme: scheme, mapper: m, http: hc}, nil
}

// Client returns a client for the logical cluster (its name, as in the kcp.io/cluster annotation).
func (w *WorkspaceClients) Client(cluster string) (client.Client, error) {
	if cluster == "" || strings.ContainsAny(cluster, "/*") {
		return nil, fmt.Errorf("invalid logical cluster %q", cluster)
	}
	cl, err := client.New(ForCluster(w.base, cluster), client.Options{Scheme: w.scheme, Mapper: w.mapper, HTTPClient: w.http})
	if err != nil {
		return nil, fmt.Errorf("client for logical cluster %s: %w", cluster, err)
	}
	return cl, nil
}

// Locate returns the logical cluster of an object of EventsListWatch / WebHookNotificationsListWatch and its name
// as in its workspace.
func Locate(o metav1.Object) (cluster, name string) { return ClusterOf(o), UnqualifiedName(o) }
