package alerts

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// On kcp every tenant has its own workspace (logical cluster) and namespace/name no longer names an object: the
// same "keys/main" Account or WebHookNotification exists in many workspaces. The kcp intake therefore carries the
// logical cluster along:
//
//   - an event's tenant is the tenant of the workspace it was written in (the controllers write each Event into the
//     workspace of the object it is about). kcp stamps the workspace on every object, so no label a writer
//     controls decides it; an Event someone forges in their own workspace reaches only their own webhooks;
//   - a WebHookNotification's tenant is likewise the tenant of its workspace (its tenant label is ignored), and the
//     Dispatcher knows it under the namespace "<logical cluster>|<namespace>", which no real namespace can spell;
//     its signing Secret and status are read and written in that workspace only.

// ClusterTenants tells which tenant owns a logical cluster (pkg/kcp's Graph).
type ClusterTenants interface {
	TenantOfCluster(lc string) (tenant string, known bool)
}

// WorkspaceClients hands out a client scoped to one logical cluster (pkg/kcp's WorkspaceClients).
type WorkspaceClients interface {
	Client(cluster string) (client.Client, error)
}

// clusterSep joins a logical cluster and a namespace in the Dispatcher's target names; namespaces cannot hold it.
const clusterSep = "|"

// WorkspaceNamespace is the namespace under which the Dispatcher knows a target in namespace ns of logical
// cluster lc (it names the target in dead-letter alerts too).
func WorkspaceNamespace(lc, ns string) string { return lc + clusterSep + ns }

func splitWorkspace(qualified string) (lc, ns string, err error) {
	lc, ns, ok := strings.Cut(qualified, clusterSep)
	if !ok || lc == "" || ns == "" {
		return "", "", fmt.Errorf("%q does not name a namespace in a workspace", qualified)
	}
	return lc, ns, nil
}

// KCPSecrets reads signing Secrets in the target's own workspace.
type KCPSecrets struct{ Workspaces WorkspaceClients }

// SigningKey implements SecretGetter for workspace-qualified namespaces.
func (k KCPSecrets) SigningKey(ctx context.Context, namespace string, sel cmkv1.SecretKeySelector) ([]byte, string, error) {
	lc, ns, err := splitWorkspace(namespace)
	if err != nil {
		return nil, "", err
	}
	c, err := k.Workspaces.Client(lc)
	if err != nil {
		return nil, "", err
	}
	return KubeSecrets{Reader: c}.SigningKey(ctx, ns, sel)
}

// KCPStatus writes delivery state on the WebHookNotification in its own workspace.
type KCPStatus struct{ Workspaces WorkspaceClients }

// WriteStatus implements StatusWriter for workspace-qualified names.
func (k KCPStatus) WriteStatus(ctx context.Context, nn types.NamespacedName, uid types.UID, st DeliveryState) error {
	lc, ns, err := splitWorkspace(nn.Namespace)
	if err != nil {
		return err
	}
	c, err := k.Workspaces.Client(lc)
	if err != nil {
		return err
	}
	return KubeStatus{Client: c}.WriteStatus(ctx, types.NamespacedName{Namespace: ns, Name: nn.Name}, uid, st)
}

// KCPSource feeds the handler and the Dispatcher's targets from every workspace of a kcp: Events about objects of
// our API group and WebHookNotifications, each through one cross-workspace list/watch. Like EventSource it must run
// on the leader only.
type KCPSource struct {
	// Events and Targets list and watch *corev1.Event and *cmkv1.WebHookNotification across all workspaces
	// (pkg/kcp EventsListWatch / WebHookNotificationsListWatch).
	Events, Targets toolscache.ListerWatcher
	// Locate returns an object's logical cluster and its name as in its workspace (pkg/kcp Locate).
	Locate  func(metav1.Object) (cluster, name string)
	Tenants ClusterTenants
	// Synced, when set, reports whether the workspace view behind Tenants has loaded; events wait for it so that
	// replayed ones find their tenant.
	Synced  toolscache.InformerSynced
	Handler *Handler
	// ReportingControllers and ReplayWindow as in EventSource.
	ReportingControllers []string
	ReplayWindow         time.Duration
	Log                  logr.Logger
	now                  func() time.Time

	mu sync.Mutex
	// unresolved holds targets seen before their workspace's tenant was known (the workspace watch is a separate
	// stream); they are retried before each event is routed.
	unresolved map[types.NamespacedName]*cmkv1.WebHookNotification
}

// NeedLeaderElection: one replica handles events.
func (s *KCPSource) NeedLeaderElection() bool { return true }

// Start runs both informers until ctx ends; events wait until the targets' initial list is loaded, so a replayed
// event finds its tenant's webhooks.
func (s *KCPSource) Start(ctx context.Context) error {
	if s.Events == nil || s.Targets == nil || s.Locate == nil || s.Tenants == nil || s.Handler == nil {
		return errors.New("alert handler on kcp: events, targets, locate, tenants and handler are required")
	}
	if s.ReplayWindow <= 0 {
		s.ReplayWindow = 10 * time.Minute
	}
	if len(s.ReportingControllers) == 0 {
		s.ReportingControllers = []string{"apeiro-cmk"}
	}
	if s.now == nil {
		s.now = time.Now
	}
	targets := toolscache.NewSharedIndexInformer(s.Targets, &cmkv1.WebHookNotification{}, 0, toolscache.Indexers{})
	if _, err := targets.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.upsertTarget(o) },
		UpdateFunc: func(_, o any) { s.upsertTarget(o) },
		DeleteFunc: func(o any) {
			if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if w, ok := o.(*cmkv1.WebHookNotification); ok {
				s.deleteTarget(s.targetName(w))
			}
		},
	}); err != nil {
		return fmt.Errorf("alert handler on kcp: target informer: %w", err)
	}
	go targets.Run(ctx.Done())
	synced := []toolscache.InformerSynced{targets.HasSynced}
	if s.Synced != nil {
		synced = append(synced, s.Synced)
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil
	}
	events := toolscache.NewSharedIndexInformer(s.Events, &corev1.Event{}, 0, toolscache.Indexers{})
	if _, err := events.AddEventHandler(toolscache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(o any, initial bool) {
			if ev, ok := o.(*corev1.Event); ok {
				s.ingest(ctx, ev, initial)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Event)
			n, ok2 := newObj.(*corev1.Event)
			if ok1 && ok2 && count(n) > count(o) {
				s.ingest(ctx, n, false)
			}
		},
	}); err != nil {
		return fmt.Errorf("alert handler on kcp: event informer: %w", err)
	}
	go events.Run(ctx.Done())
	<-ctx.Done()
	return nil
}

func (s *KCPSource) targetName(w *cmkv1.WebHookNotification) types.NamespacedName {
	lc, name := s.Locate(w)
	return types.NamespacedName{Namespace: WorkspaceNamespace(lc, w.Namespace), Name: name}
}

func (s *KCPSource) upsertTarget(o any) {
	w, ok := o.(*cmkv1.WebHookNotification)
	if !ok {
		return
	}
	nn := s.targetName(w)
	if w.DeletionTimestamp != nil {
		s.deleteTarget(nn)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upsertLocked(nn, w)
}

// upsertLocked hands the Dispatcher a copy named by workspace and labelled with the workspace's tenant.
func (s *KCPSource) upsertLocked(nn types.NamespacedName, w *cmkv1.WebHookNotification) {
	lc, _ := s.Locate(w)
	tenant, known := s.Tenants.TenantOfCluster(lc)
	c := w.DeepCopy()
	c.Namespace, c.Name = nn.Namespace, nn.Name
	c.Labels = maps.Clone(c.Labels)
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	// "" (not a tenant workspace, or not known yet) matches no event.
	c.Labels[cmkv1.TenantLabel] = tenant
	if !known {
		if s.unresolved == nil {
			s.unresolved = map[types.NamespacedName]*cmkv1.WebHookNotification{}
		}
		s.unresolved[nn] = w
	} else {
		delete(s.unresolved, nn)
	}
	if s.Handler.Webhooks != nil {
		s.Handler.Webhooks.Upsert(c)
	}
}

func (s *KCPSource) deleteTarget(nn types.NamespacedName) {
	s.mu.Lock()
	delete(s.unresolved, nn)
	s.mu.Unlock()
	if s.Handler.Webhooks != nil {
		s.Handler.Webhooks.Delete(nn)
	}
}

// resolvePending retries targets whose workspace was unknown when they were seen.
func (s *KCPSource) resolvePending() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for nn, w := range s.unresolved {
		lc, _ := s.Locate(w)
		if _, known := s.Tenants.TenantOfCluster(lc); known {
			s.upsertLocked(nn, w)
		}
	}
}

func (s *KCPSource) accepted(ev *corev1.Event) bool {
	for _, c := range []string{ev.ReportingController, ev.Source.Component} {
		for _, p := range s.ReportingControllers {
			if c != "" && strings.HasPrefix(c, p) {
				return true
			}
		}
	}
	return false
}

func (s *KCPSource) ingest(ctx context.Context, ev *corev1.Event, initial bool) {
	if _, ok := Rules[ev.Reason]; !ok || !s.accepted(ev) {
		return
	}
	e, err := s.Convert(ev)
	if err != nil {
		s.Log.V(1).Info("event not routed", "event", ev.Namespace+"/"+ev.Name, "error", err.Error())
		return
	}
	s.resolvePending()
	toWebhooks := !initial || s.now().Sub(e.Time) < s.ReplayWindow
	if err := s.Handler.Replay(ctx, e, toWebhooks); err != nil && ctx.Err() == nil {
		s.Log.Error(err, "event not handled", "event", ev.Namespace+"/"+ev.Name)
	}
}

// Convert attributes an Event to the tenant of the workspace it was written in. An Event outside any tenant
// workspace (or in one not known yet) stays unattributed: Alertmanager only, never a tenant webhook.
func (s *KCPSource) Convert(ev *corev1.Event) (*Event, error) {
	ref := ev.InvolvedObject
	if gv := ref.APIVersion; gv != cmkv1.GroupVersion.String() {
		return nil, fmt.Errorf("event is about %s, not our API group", gv)
	}
	lc, name := s.Locate(ev)
	if lc == "" {
		return nil, fmt.Errorf("event %s carries no logical cluster", name)
	}
	if ref.Namespace != ev.Namespace {
		// The controllers write an Event next to its object; one elsewhere is not ours to attribute.
		return nil, fmt.Errorf("event in namespace %q is about an object in %q", ev.Namespace, ref.Namespace)
	}
	tenant, _ := s.Tenants.TenantOfCluster(lc)
	e := &Event{
		ID:        string(ev.UID) + "-" + strconv.Itoa(int(max(count(ev), 1))),
		Reason:    ev.Reason,
		Tenant:    tenant,
		Namespace: ref.Namespace,
		Object:    ObjectRef{Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name},
		Message:   ev.Message,
		Time:      eventTime(ev),
	}
	switch ref.Kind {
	case "Account":
		e.Account = ref.Name
	case "ServiceEncryptionKey":
		e.Key = ref.Name
	case "Tenant":
	default:
		return nil, fmt.Errorf("events about %s are not routed", ref.Kind)
	}
	return e, nil
}
