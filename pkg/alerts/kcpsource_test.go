package alerts

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// fakeTenants maps logical clusters to tenants.
type fakeTenants map[string]string

func (f fakeTenants) TenantOfCluster(lc string) (string, bool) { t, ok := f[lc]; return t, ok }

// locateAnno reads the cluster from the kcp.io/cluster annotation and strips a "cluster|" name prefix, as
// pkg/kcp's list-watches hand objects over.
func locateAnno(o metav1.Object) (string, string) {
	n := o.GetName()
	if i := strings.Index(n, "|"); i >= 0 {
		n = n[i+1:]
	}
	return o.GetAnnotations()["kcp.io/cluster"], n
}

func kcpEvent(lc, ns, kind, name, reason string) *corev1.Event {
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: lc + "|" + name + ".1", Namespace: ns, UID: types.UID("u-" + lc + name),
			Annotations: map[string]string{"kcp.io/cluster": lc}, CreationTimestamp: metav1.Now()},
		InvolvedObject:      corev1.ObjectReference{APIVersion: cmkv1.GroupVersion.String(), Kind: kind, Namespace: ns, Name: name},
		Reason:              reason,
		ReportingController: "apeiro-cmk",
		Count:               1,
	}
}

func TestKCPConvertAttributesByWorkspace(t *testing.T) {
	s := &KCPSource{Locate: locateAnno, Tenants: fakeTenants{"lc-acme": "acme", "lc-globex": "globex", "lc-platform": ""}}
	for _, tc := range []struct {
		name            string
		ev              *corev1.Event
		tenant, account string
		key             string
		err             string
	}{
		{name: "account in acme", ev: kcpEvent("lc-acme", "keys", "Account", "main", ReasonL1KeyUnreachable), tenant: "acme", account: "main"},
		{name: "same name in globex", ev: kcpEvent("lc-globex", "keys", "Account", "main", ReasonL1KeyUnreachable), tenant: "globex", account: "main"},
		{name: "key", ev: kcpEvent("lc-acme", "keys", "ServiceEncryptionKey", "k1", ReasonKeyCreated), tenant: "acme", key: "k1"},
		{name: "platform workspace: unattributed", ev: kcpEvent("lc-platform", "keys", "Account", "main", ReasonAccountReady), account: "main"},
		{name: "unknown workspace: unattributed", ev: kcpEvent("lc-new", "keys", "Account", "main", ReasonAccountReady), account: "main"},
		{name: "no cluster", ev: kcpEvent("", "keys", "Account", "main", ReasonAccountReady), err: "no logical cluster"},
		{name: "other group", ev: func() *corev1.Event {
			e := kcpEvent("lc-acme", "keys", "Pod", "p", ReasonAccountReady)
			e.InvolvedObject.APIVersion = "v1"
			return e
		}(), err: "not our API group"},
		{name: "about another namespace", ev: func() *corev1.Event {
			e := kcpEvent("lc-acme", "keys", "Account", "main", ReasonAccountReady)
			e.InvolvedObject.Namespace = "other"
			return e
		}(), err: "is about an object in"},
		{name: "unrouted kind", ev: kcpEvent("lc-acme", "keys", "WebHookNotification", "w", ReasonAccountReady), err: "not routed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := s.Convert(tc.ev)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.Tenant != tc.tenant || e.Account != tc.account || e.Key != tc.key || e.Object.Name != tc.ev.InvolvedObject.Name {
				t.Fatalf("event %+v", e)
			}
			if err := e.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A target's tenant is its workspace's, whatever its tenant label says; a target seen before its workspace is
// known gets no events until the workspace is known.
func TestKCPTargetsTenantFromWorkspace(t *testing.T) {
	tenants := fakeTenants{"lc-acme": "acme"}
	d := NewDispatcher(WebhookOptions{})
	s := &KCPSource{Locate: locateAnno, Tenants: tenants, Handler: &Handler{Webhooks: d}}
	wh := func(lc, tenantLabel string) *cmkv1.WebHookNotification {
		return &cmkv1.WebHookNotification{
			ObjectMeta: metav1.ObjectMeta{Name: lc + "|alerts", Namespace: "keys", UID: types.UID("u-" + lc),
				Annotations: map[string]string{"kcp.io/cluster": lc}, Labels: map[string]string{cmkv1.TenantLabel: tenantLabel}},
			Spec: cmkv1.WebHookNotificationSpec{URL: "https://hooks.example.com/x", EventTypes: []cmkv1.EventType{cmkv1.EventL1KeyUnreachable}},
		}
	}
	s.upsertTarget(wh("lc-acme", "globex")) // a forged label does not move the target to another tenant
	s.upsertTarget(wh("lc-late", "acme"))
	tenantOf := func(lc string) string {
		d.mu.Lock()
		defer d.mu.Unlock()
		tg, ok := d.targets[types.NamespacedName{Namespace: WorkspaceNamespace(lc, "keys"), Name: "alerts"}]
		if !ok {
			t.Fatalf("no target for %s", lc)
		}
		return tg.spec.Load().tenant
	}
	if got := tenantOf("lc-acme"); got != "acme" {
		t.Fatalf("acme's target has tenant %q", got)
	}
	if got := tenantOf("lc-late"); got != "" {
		t.Fatalf("a target of an unknown workspace has tenant %q, want none", got)
	}
	tenants["lc-late"] = "late"
	s.resolvePending()
	if got := tenantOf("lc-late"); got != "late" {
		t.Fatalf("after its workspace became known: tenant %q", got)
	}
	s.deleteTarget(types.NamespacedName{Namespace: WorkspaceNamespace("lc-late", "keys"), Name: "alerts"})
	if _, ok := d.State(types.NamespacedName{Namespace: WorkspaceNamespace("lc-late", "keys"), Name: "alerts"}); ok {
		t.Fatal("deleted target still known")
	}
}

func TestSplitWorkspace(t *testing.T) {
	for in, ok := range map[string]bool{"lc|keys": true, "keys": false, "|keys": false, "lc|": false, "": false} {
		if _, _, err := splitWorkspace(in); (err == nil) != ok {
			t.Errorf("%q: %v", in, err)
		}
	}
}

// FuzzSplitWorkspace: any string either splits into a non-empty cluster and namespace that join back to it, or is
// refused; never a panic.
func FuzzSplitWorkspace(f *testing.F) {
	for _, s := range []string{"lc|keys", "keys", "|", "a|b|c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lc, ns, err := splitWorkspace(s)
		if err != nil {
			return
		}
		if lc == "" || ns == "" || WorkspaceNamespace(lc, ns) != s {
			t.Fatalf("%q split into %q and %q", s, lc, ns)
		}
	})
}
