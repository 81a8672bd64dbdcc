package alerts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// EventSource feeds the handler from Kubernetes Events about objects of our API group. Only events reported by an
// accepted controller (ReportingControllers, prefix match against reportingComponent / source.component) count,
// so a tenant who may create Events in their namespace cannot raise alerts for keys they do not have.
//
// It must run on one replica only (the leader): every replica would otherwise deliver every event.
type EventSource struct {
	Clientset kubernetes.Interface
	// Objects reads Accounts, ServiceEncryptionKeys and Tenants to attribute an event to its tenant (the
	// manager's cached client).
	Objects client.Reader
	Handler *Handler
	// ReportingControllers lists accepted reporting components (prefixes); empty accepts "apeiro-cmk".
	ReportingControllers []string
	// ReplayWindow: after a restart, events in the initial list younger than this are delivered to tenant webhooks
	// again (at-least-once across restarts, deduplicated by the X-Apeiro-Delivery id); older ones only rebuild
	// Alertmanager state (default 10 min).
	ReplayWindow time.Duration
	// CertificateNamespaces are the namespaces the certificate renewal loop writes its Events to; only there is
	// the Event's tenant label trusted (elsewhere certificate events go to Alertmanager only).
	CertificateNamespaces []string
	Log                   logr.Logger
	now                   func() time.Time
}

// NeedLeaderElection: one replica handles events.
func (s *EventSource) NeedLeaderElection() bool { return true }

// Start runs the Event informer until ctx ends.
func (s *EventSource) Start(ctx context.Context) error {
	if s.ReplayWindow <= 0 {
		s.ReplayWindow = 10 * time.Minute
	}
	if len(s.ReportingControllers) == 0 {
		s.ReportingControllers = []string{"apeiro-cmk"}
	}
	if s.now == nil {
		s.now = time.Now
	}
	// Two watches: events about objects of our API group, and the certificate renewal loop's events (about the
	// Secrets or files it renews, marked with the certificate-target label).
	selectors := []func(*metav1.ListOptions){
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("involvedObject.apiVersion", cmkv1.GroupVersion.String()).String()
		},
		func(o *metav1.ListOptions) { o.LabelSelector = CertificateTargetLabel },
	}
	var informers []toolscache.SharedIndexInformer
	for _, sel := range selectors {
		lw := toolscache.NewFilteredListWatchFromClient(s.Clientset.CoreV1().RESTClient(), "events", metav1.NamespaceAll, sel)
		inf := toolscache.NewSharedIndexInformer(lw, &corev1.Event{}, 0, toolscache.Indexers{})
		_ = inf.SetTransform(func(o any) (any, error) {
			if m, err := meta.Accessor(o); err == nil {
				m.SetManagedFields(nil)
			}
			return o, nil
		})
		_, err := inf.AddEventHandler(toolscache.ResourceEventHandlerDetailedFuncs{
			AddFunc: func(o any, initial bool) {
				if ev, ok := o.(*corev1.Event); ok {
					s.ingest(ctx, ev, initial)
				}
			},
			UpdateFunc: func(oldObj, newObj any) {
				o, ok1 := oldObj.(*corev1.Event)
				n, ok2 := newObj.(*corev1.Event)
				// A repeated event (same reason and object) is one Event object whose count grows.
				if ok1 && ok2 && count(n) > count(o) {
					s.ingest(ctx, n, false)
				}
			},
		})
		if err != nil {
			return fmt.Errorf("alert handler: event informer: %w", err)
		}
		informers = append(informers, inf)
	}
	for _, inf := range informers {
		go inf.Run(ctx.Done())
	}
	<-ctx.Done()
	return nil
}

// CertificateTargetLabel marks the certificate renewal loop's Events; their tenant is the event's tenant label.
const CertificateTargetLabel = "cmk.apeiro.io/certificate-target"

func count(ev *corev1.Event) int32 {
	c := ev.Count
	if ev.Series != nil && ev.Series.Count > c {
		c = ev.Series.Count
	}
	return c
}

func eventTime(ev *corev1.Event) time.Time {
	t := ev.CreationTimestamp.Time
	for _, c := range []time.Time{ev.FirstTimestamp.Time, ev.LastTimestamp.Time, ev.EventTime.Time} {
		if c.After(t) {
			t = c
		}
	}
	if ev.Series != nil && ev.Series.LastObservedTime.After(t) {
		t = ev.Series.LastObservedTime.Time
	}
	return t
}

func (s *EventSource) accepted(ev *corev1.Event) bool {
	for _, c := range []string{ev.ReportingController, ev.Source.Component} {
		for _, p := range s.ReportingControllers {
			if c != "" && strings.HasPrefix(c, p) {
				return true
			}
		}
	}
	return false
}

func (s *EventSource) ingest(ctx context.Context, ev *corev1.Event, initial bool) {
	if _, ok := Rules[ev.Reason]; !ok || !s.accepted(ev) {
		return
	}
	e, err := s.Convert(ctx, ev)
	if err != nil {
		s.Log.V(1).Info("event not routed", "event", ev.Namespace+"/"+ev.Name, "error", err.Error())
		return
	}
	toWebhooks := !initial || s.now().Sub(e.Time) < s.ReplayWindow
	if err := s.Handler.Replay(ctx, e, toWebhooks); err != nil && ctx.Err() == nil {
		s.Log.Error(err, "event not handled", "event", ev.Namespace+"/"+ev.Name)
	}
}

// Convert attributes a Kubernetes Event to its tenant by reading the object it is about. An object that is gone
// leaves the event unattributed (Alertmanager only).
func (s *EventSource) Convert(ctx context.Context, ev *corev1.Event) (*Event, error) {
	ref := ev.InvolvedObject
	if target, ok := ev.Labels[CertificateTargetLabel]; ok {
		e := &Event{ID: string(ev.UID) + "-" + strconv.Itoa(int(max(count(ev), 1))), Reason: ev.Reason,
			Namespace: ref.Namespace, Object: ObjectRef{Kind: "Certificate", Namespace: ref.Namespace, Name: target},
			Message: ev.Message, Time: eventTime(ev)}
		// The tenant comes from a label on the Event itself, which only the platform's own namespaces can be
		// trusted with: anywhere else a tenant able to create Events could name another tenant.
		if slices.Contains(s.CertificateNamespaces, ev.Namespace) {
			e.Tenant = ev.Labels[cmkv1.TenantLabel]
		}
		return e, nil
	}
	if gv := ref.APIVersion; gv != cmkv1.GroupVersion.String() {
		return nil, fmt.Errorf("event is about %s, not our API group", gv)
	}
	e := &Event{
		ID:        string(ev.UID) + "-" + strconv.Itoa(int(max(count(ev), 1))),
		Reason:    ev.Reason,
		Namespace: ref.Namespace,
		Object:    ObjectRef{Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name},
		Message:   ev.Message,
		Time:      eventTime(ev),
	}
	key := types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}
	var obj client.Object
	switch ref.Kind {
	case "Account":
		obj = &cmkv1.Account{}
		e.Account = ref.Name
	case "ServiceEncryptionKey":
		obj = &cmkv1.ServiceEncryptionKey{}
		e.Key = ref.Name
	case "Tenant":
		obj = &cmkv1.Tenant{}
	default:
		return nil, fmt.Errorf("events about %s are not routed", ref.Kind)
	}
	if err := s.Objects.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return e, nil
		}
		return nil, fmt.Errorf("reading %s %s: %w", ref.Kind, key, err)
	}
	if obj.GetUID() != ref.UID && ref.UID != "" {
		return e, nil // a re-created object of the same name is someone else's business
	}
	switch o := obj.(type) {
	case *cmkv1.Tenant:
		e.Tenant = o.Name
	case *cmkv1.ServiceEncryptionKey:
		e.Tenant = o.Labels[cmkv1.TenantLabel]
		e.Account = o.Spec.AccountRef.Name
	default:
		e.Tenant = obj.GetLabels()[cmkv1.TenantLabel]
	}
	return e, nil
}

// WatchTargets keeps the dispatcher's targets in step with WebHookNotifications (add, change, delete; no restart).
func WatchTargets(inf interface {
	AddEventHandler(toolscache.ResourceEventHandler) (toolscache.ResourceEventHandlerRegistration, error)
}, d *Dispatcher) error {
	_, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { upsert(d, o) },
		UpdateFunc: func(_, o any) { upsert(d, o) },
		DeleteFunc: func(o any) {
			if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if w, ok := o.(*cmkv1.WebHookNotification); ok {
				d.Delete(types.NamespacedName{Namespace: w.Namespace, Name: w.Name})
			}
		},
	})
	return err
}

func upsert(d *Dispatcher, o any) {
	if w, ok := o.(*cmkv1.WebHookNotification); ok {
		if w.DeletionTimestamp != nil {
			d.Delete(types.NamespacedName{Namespace: w.Namespace, Name: w.Name})
			return
		}
		d.Upsert(w)
	}
}

// KubeSecrets reads signing keys live from the API server (Secrets are not cached: the handler reads only the
// ones targets name).
type KubeSecrets struct{ Reader client.Reader }

// SigningKey returns the key bytes and a digest of them as version (a rotation changes the digest).
func (k KubeSecrets) SigningKey(ctx context.Context, namespace string, sel cmkv1.SecretKeySelector) ([]byte, string, error) {
	var s corev1.Secret
	if err := k.Reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: sel.Name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, "", errors.New("secret not found")
		}
		return nil, "", fmt.Errorf("reading secret: %w", err)
	}
	v := s.Data[sel.Key]
	if len(v) == 0 {
		return nil, "", errors.New("secret has no such key or it is empty")
	}
	sum := sha256.Sum256(v)
	return v, hex.EncodeToString(sum[:8]), nil
}

// KubeStatus writes delivery state on WebHookNotification status.
type KubeStatus struct{ Client client.Client }

// Condition types on WebHookNotification status.
const (
	ConditionDelivering    = "Delivering"
	ConditionSigningSecret = "SigningSecretReady"
)

// WriteStatus updates the status subresource (conflicts retried; a re-created object is left alone).
func (k KubeStatus) WriteStatus(ctx context.Context, nn types.NamespacedName, uid types.UID, st DeliveryState) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var w cmkv1.WebHookNotification
		if err := k.Client.Get(ctx, nn, &w); err != nil {
			return client.IgnoreNotFound(err)
		}
		if w.UID != uid {
			return nil
		}
		ApplyState(&w, st)
		return k.Client.Status().Update(ctx, &w)
	})
}

// ApplyState copies delivery state into an object's status.
func ApplyState(w *cmkv1.WebHookNotification, st DeliveryState) {
	s := &w.Status
	if !st.LastSuccess.IsZero() {
		t := metav1.NewTime(st.LastSuccess)
		s.LastSuccessTime = &t
	}
	if !st.LastFailure.IsZero() {
		t := metav1.NewTime(st.LastFailure)
		s.LastFailureTime = &t
		s.LastFailureReason = st.LastFailureReason
	}
	s.ConsecutiveFailures = st.ConsecutiveFailures
	s.Delivered = st.Delivered
	s.DeadLettered = st.DeadLettered
	deliv := metav1.Condition{Type: ConditionDelivering, Status: metav1.ConditionTrue, Reason: "Delivered", Message: "the last delivery succeeded", ObservedGeneration: w.Generation}
	if st.ConsecutiveFailures > 0 {
		deliv.Status, deliv.Reason = metav1.ConditionFalse, "DeliveryFailed"
		deliv.Message = fmt.Sprintf("%d deliveries failed in a row; last: %s", st.ConsecutiveFailures, st.LastFailureReason)
	}
	if st.LastSuccess.IsZero() && st.LastFailure.IsZero() {
		deliv.Status, deliv.Reason, deliv.Message = metav1.ConditionUnknown, "NoDeliveries", "nothing delivered yet"
	}
	meta.SetStatusCondition(&s.Conditions, deliv)
	if w.Spec.SigningSecretRef != nil {
		sc := metav1.Condition{Type: ConditionSigningSecret, Status: metav1.ConditionTrue, Reason: "Found", Message: "the signing secret holds the key", ObservedGeneration: w.Generation}
		if !st.SecretRotatedAt.IsZero() {
			sc.Reason = "Rotated"
			sc.Message = "the signing key changed at " + st.SecretRotatedAt.UTC().Format(time.RFC3339) + "; deliveries since are signed with the new key"
		}
		if st.SecretProblem != "" {
			sc.Status, sc.Reason, sc.Message = metav1.ConditionFalse, "Unusable", st.SecretProblem
		}
		meta.SetStatusCondition(&s.Conditions, sc)
	} else {
		meta.RemoveStatusCondition(&s.Conditions, ConditionSigningSecret)
	}
	for i := range s.Conditions {
		s.Conditions[i].Message = truncateUTF8(s.Conditions[i].Message, 1000)
	}
}
