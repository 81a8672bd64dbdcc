package admission_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	cradmission "sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/admissiontest"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// terminate puts obj (already in the fake API server) into deletion, held by a finalizer, as a client holding a
// finalizer would.
func terminate(t testing.TB, w *admissiontest.World, obj client.Object) {
	t.Helper()
	ctx := context.Background()
	if err := w.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatal(err)
	}
	obj.SetFinalizers([]string{"example.com/hold"})
	if err := w.Client.Update(ctx, obj); err != nil {
		t.Fatal(err)
	}
	if err := w.Client.Delete(ctx, obj); err != nil {
		t.Fatal(err)
	}
}

func withFinalizerRemoved[T client.Object](old T, cur T) (T, T) {
	now := metav1.Now()
	old.SetDeletionTimestamp(&now)
	old.SetFinalizers([]string{"example.com/hold"})
	cur.SetDeletionTimestamp(&now)
	cur.SetFinalizers(nil)
	return old, cur
}

func TestReviewTerminatingParents(t *testing.T) {
	const eu, payments = admissiontest.AcmeEU, admissiontest.AcmePayments
	runReviewCases(t, []reviewCase{
		{name: "key referencing a terminating account denied", path: admission.PathValidateServiceEncryption,
			setup: func(t testing.TB, w *admissiontest.World) { terminate(t, w, account(eu, "main")) },
			req:   keyReq("", key(eu, "k-new", eu, "main"), nil),
			want:  want{msg: []string{`"acme-eu/main" is not found or not usable`}, fields: []string{"spec.accountRef"}}},
		{name: "account in a terminating tenant denied", path: admission.PathValidateAccount,
			setup: func(t testing.TB, w *admissiontest.World) {
				terminate(t, w, admissiontest.TenantObject(hierarchy.Tenant{ID: payments, Type: hierarchy.Nested, Parent: eu}))
			},
			req:  accountReq("", account(payments, "second"), nil),
			want: want{msg: []string{`tenant "acme-eu-payments"`, "is being deleted"}, fields: []string{"metadata.namespace"}}},
		{name: "updates inside a terminating tenant stay allowed", path: admission.PathValidateAccount,
			setup: func(t testing.TB, w *admissiontest.World) {
				terminate(t, w, admissiontest.TenantObject(hierarchy.Tenant{ID: payments, Type: hierarchy.Nested, Parent: eu}))
			},
			req:  accountReq(admissionv1.Update, account(payments, "main"), account(payments, "main")),
			want: want{allowed: true}},
		{name: "child of a terminating tenant denied", path: admission.PathValidateTenant,
			setup: func(t testing.TB, w *admissiontest.World) {
				terminate(t, w, admissiontest.TenantObject(hierarchy.Tenant{ID: eu, Type: hierarchy.Nested, Parent: admissiontest.Acme}))
			},
			req:  tenantReq("", admissiontest.TenantObject(hierarchy.Tenant{ID: "acme-eu-new", Type: hierarchy.Nested, Parent: eu}), nil),
			want: want{msg: []string{`tenant "acme-eu" is being deleted`}, fields: []string{"spec.parent"}}},
		{name: "last finalizer of an Account with keys may not go", path: admission.PathValidateAccount,
			req: func() admissiontest.Req {
				old, cur := withFinalizerRemoved(account(eu, "main"), account(eu, "main"))
				return accountReq(admissionv1.Update, cur, old)
			}(),
			want: want{msg: []string{`account "acme-eu/main" is still referenced by`}, fields: []string{"metadata.name"}}},
		{name: "last finalizer of an Account without keys goes", path: admission.PathValidateAccount,
			req: func() admissiontest.Req {
				old, cur := withFinalizerRemoved(account(admissiontest.Globex, "main"), account(admissiontest.Globex, "main"))
				return accountReq(admissionv1.Update, cur, old)
			}(),
			want: want{allowed: true}},
		{name: "last finalizer of a Tenant with children may not go", path: admission.PathValidateTenant,
			req: func() admissiontest.Req {
				tn := hierarchy.Tenant{ID: eu, Type: hierarchy.Nested, Parent: admissiontest.Acme}
				old, cur := withFinalizerRemoved(admissiontest.TenantObject(tn), admissiontest.TenantObject(tn))
				return tenantReq(admissionv1.Update, cur, old)
			}(),
			want: want{msg: []string{`tenant "acme-eu" still has`}, fields: []string{"metadata.name"}}},
		{name: "last finalizer of a Tenant that still owns a namespace may not go", path: admission.PathValidateTenant,
			req: func() admissiontest.Req {
				tn := hierarchy.Tenant{ID: admissiontest.Globex, Type: hierarchy.Root}
				old, cur := withFinalizerRemoved(admissiontest.TenantObject(tn), admissiontest.TenantObject(tn))
				return tenantReq(admissionv1.Update, cur, old)
			}(),
			want: want{msg: []string{`tenant "globex" still owns namespaces [globex]`}, fields: []string{"metadata.name"}}},
	})
}

func TestReviewRequiredLabels(t *testing.T) {
	runReviewCases(t, []reviewCase{
		{name: "key without the account-ref label denied", path: admission.PathValidateServiceEncryption,
			req: keyReq("", func() *cmkv1.ServiceEncryptionKey {
				k := key(admissiontest.AcmeEU, "k-new", admissiontest.AcmeEU, "main")
				delete(k.Labels, admission.AccountRefLabel)
				return k
			}(), nil),
			want: want{msg: []string{"is missing"}, fields: []string{"metadata.labels[" + admission.AccountRefLabel + "]"}}},
		{name: "generateName tenant (stored without its label) denied", path: admission.PathValidateTenant,
			req: tenantReq("", func() *cmkv1.Tenant {
				tn := unlabelled(admissiontest.TenantObject(hierarchy.Tenant{ID: "gen-x7k2p", Type: hierarchy.Root}))
				tn.GenerateName = "gen-"
				return tn
			}(), nil),
			want: want{msg: []string{"generateName is not supported"}, fields: []string{"metadata.labels[" + cmkv1.TenantLabel + "]"}}},
	})
}

// TestAccountRefDenialsAreUniform: whatever the reason a reference is refused (no such Account, no such
// namespace, an Account of an unrelated tenant, a terminating Account), the answer is the same, so a dry run is no
// oracle for other tenants' Accounts.
func TestAccountRefDenialsAreUniform(t *testing.T) {
	refs := map[string]hierarchy.AccountKey{
		"other tenant's account": {Namespace: admissiontest.Globex, Name: "main"},
		"missing account":        {Namespace: admissiontest.Globex, Name: "nope"},
		"missing namespace":      {Namespace: "no-such-namespace", Name: "main"},
		"unassigned namespace":   {Namespace: admissiontest.Unassigned, Name: "main"},
	}
	var first, firstName string
	for name, ref := range refs {
		w := admissiontest.NewWorld()
		mux := admissiontest.Mux(w.Handlers(admission.Handlers{}), admission.Limits{})
		req := keyReq("", key(admissiontest.AcmeEU, "probe", ref.Namespace, ref.Name), nil)
		req.DryRun = true
		rec := admissiontest.Post(mux, admission.PathValidateServiceEncryption, req.Body())
		ar, err := admissiontest.Decode(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		if ar.Response.Allowed || ar.Response.Result == nil {
			t.Fatalf("%s: allowed", name)
		}
		b, _ := json.Marshal(ar.Response.Result.Details)
		got := strings.ReplaceAll(ar.Response.Result.Message+string(b), ref.String(), "<ref>")
		if first == "" {
			first, firstName = got, name
			continue
		}
		if got != first {
			t.Errorf("answers differ:\n%s: %s\n%s: %s", firstName, first, name, got)
		}
	}
}

func nsReq(t *testing.T, op admissionv1.Operation, sub string, cur, old *corev1.Namespace) cradmission.Request {
	t.Helper()
	raw := func(o *corev1.Namespace) runtime.RawExtension {
		if o == nil {
			return runtime.RawExtension{}
		}
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		return runtime.RawExtension{Raw: b}
	}
	return cradmission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid-ns", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Namespace"}, Name: cur.Name,
		Operation: op, SubResource: sub, Object: raw(cur), OldObject: raw(old),
	}}
}

func TestReviewNamespaceAssignment(t *testing.T) {
	ns := func(name, tenant string) *corev1.Namespace { return admissiontest.NamespaceObject(name, tenant) }
	cases := []struct {
		name      string
		setup     func(t *testing.T, w *admissiontest.World)
		op        admissionv1.Operation
		sub       string
		cur, old  *corev1.Namespace
		allowed   bool
		msg, rule string
	}{
		{name: "occupied namespace moved to another tenant", op: admissionv1.Update,
			cur: ns(admissiontest.AcmeEU, admissiontest.Globex), old: ns(admissiontest.AcmeEU, admissiontest.AcmeEU),
			msg: "still holds Accounts;", rule: admission.RuleNamespaceOccupied},
		{name: "occupied namespace moved through namespaces/status", op: admissionv1.Update, sub: "status",
			cur: ns(admissiontest.AcmeEU, admissiontest.Globex), old: ns(admissiontest.AcmeEU, admissiontest.AcmeEU),
			msg: "still holds", rule: admission.RuleNamespaceOccupied},
		{name: "occupied namespace unassigned", op: admissionv1.Update,
			cur: ns(admissiontest.AcmeEU, ""), old: ns(admissiontest.AcmeEU, admissiontest.AcmeEU),
			msg: "still holds", rule: admission.RuleNamespaceOccupied},
		{name: "empty namespace released", op: admissionv1.Update,
			setup: func(t *testing.T, w *admissiontest.World) { w.Release(t, admissiontest.Globex) },
			cur:   ns("fresh", ""), old: ns("fresh", admissiontest.Globex), allowed: true},
		{name: "assigned to an existing tenant", op: admissionv1.Create, cur: ns("fresh", admissiontest.Globex), allowed: true},
		{name: "assigned to a tenant that does not exist", op: admissionv1.Update,
			cur: ns(admissiontest.Unassigned, "nobody"), old: ns(admissiontest.Unassigned, ""),
			msg: `tenant "nobody" does not exist`, rule: admission.RuleTenantUnknown},
		{name: "assigned to a terminating tenant", op: admissionv1.Update,
			setup: func(t *testing.T, w *admissiontest.World) {
				terminate(t, w, admissiontest.TenantObject(hierarchy.Tenant{ID: admissiontest.Globex, Type: hierarchy.Root}))
			},
			cur: ns(admissiontest.Unassigned, admissiontest.Globex), old: ns(admissiontest.Unassigned, ""),
			msg: "is being deleted", rule: admission.RuleTerminating},
		{name: "other label changes pass", op: admissionv1.Update, cur: func() *corev1.Namespace {
			n := ns(admissiontest.AcmeEU, admissiontest.AcmeEU)
			n.Labels["team"] = "x"
			return n
		}(), old: ns(admissiontest.AcmeEU, admissiontest.AcmeEU), allowed: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := admissiontest.NewWorld()
			if tc.setup != nil {
				tc.setup(t, w)
			}
			h := w.Handlers(admission.Handlers{})
			resp := h.ValidateNamespace(context.Background(), nsReq(t, tc.op, tc.sub, tc.cur, tc.old))
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v: %+v", resp.Allowed, tc.allowed, resp.Result)
			}
			if tc.allowed {
				return
			}
			if !strings.Contains(resp.Result.Message, tc.msg) {
				t.Errorf("message %q does not contain %q", resp.Result.Message, tc.msg)
			}
			if c := resp.Result.Details.Causes; len(c) != 1 || !strings.HasSuffix(string(c[0].Type), ":"+tc.rule) {
				t.Errorf("causes %+v, want rule %s", c, tc.rule)
			}
		})
	}
}

func TestTenantGroupsBypass(t *testing.T) {
	p := admission.TenantGroups{Prefix: admission.DefaultTenantAdminGroupPrefix, Bypass: admission.DefaultBypassGroups, BypassUsers: admission.DefaultBypassUsers}
	for _, tc := range []struct {
		user   string
		groups []string
		ok     bool
	}{
		{"system:serviceaccount:kube-system:namespace-controller", []string{"system:serviceaccounts", "system:serviceaccounts:kube-system"}, true},
		{"system:serviceaccount:kube-system:generic-garbage-collector", nil, true},
		{"system:serviceaccount:kube-system:some-pod", []string{"system:serviceaccounts", "system:serviceaccounts:kube-system"}, false},
		{"admin", []string{"system:masters"}, true},
		{"alice", []string{"apeiro-cmk:tenant:acme:admin"}, true},
		{"alice", []string{"apeiro-cmk:tenant:globex:admin"}, false},
	} {
		err := p.Authorize(context.Background(), authUser(tc.user, tc.groups), "acme", "Account", admission.ActionWrite)
		if (err == nil) != tc.ok {
			t.Errorf("%s %v: err = %v, want ok=%v", tc.user, tc.groups, err, tc.ok)
		}
	}
}

func authUser(name string, groups []string) authenticationv1.UserInfo {
	return authenticationv1.UserInfo{Username: name, Groups: groups}
}

// TestInFlightBudget: while large bodies hold the in-flight budget, a further large request is refused (429) instead
// of being read into memory; small requests and later requests pass once the budget is free again.
func TestInFlightBudget(t *testing.T) {
	w := admissiontest.NewWorld()
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	slow := proberFunc(func(ctx context.Context, _ *cmkv1.Account) error {
		started <- struct{}{}
		<-release
		return nil
	})
	h := w.Handlers(admission.Handlers{Keys: slow, ProbeTimeout: time.Minute})
	mux := admissiontest.Mux(h, admission.Limits{MaxBodyBytes: 1 << 20, MaxInFlightBytes: 1 << 20, InFlightWait: 20 * time.Millisecond})
	big := func(name string) []byte {
		a := account(admissiontest.AcmeEU, name)
		a.Annotations = map[string]string{"pad": strings.Repeat("x", 700<<10)}
		return accountReq("", a, nil).Body()
	}
	done := make(chan int, 1)
	go func() { done <- admissiontest.Post(mux, admission.PathValidateAccount, big("first")).Code }()
	<-started
	if code := admissiontest.Post(mux, admission.PathValidateAccount, big("second")).Code; code != http.StatusTooManyRequests {
		t.Fatalf("second large request while the first holds the budget: %d, want 429", code)
	}
	close(release)
	if code := <-done; code != http.StatusOK {
		t.Fatalf("first request: %d", code)
	}
	started = make(chan struct{}, 1)
	go func() { <-started }()
	if code := admissiontest.Post(mux, admission.PathValidateAccount, big("third")).Code; code != http.StatusOK {
		t.Fatalf("after the budget was released: %d", code)
	}
}

// FuzzValidateNamespace: any namespace write (label values, subresource, operation, raw object bytes) gets a
// well-formed answer, never a crash.
func FuzzValidateNamespace(f *testing.F) {
	w := admissiontest.NewWorld()
	h := w.Handlers(admission.Handlers{})
	f.Add("acme-eu", "acme-eu", "globex", "", uint8(1), []byte(nil))
	f.Add("fresh", "", "globex", "status", uint8(0), []byte(nil))
	f.Add("x", "a", "", "finalize", uint8(1), []byte(`{"metadata":{"labels":null}}`))
	f.Add("x", "", "", "", uint8(2), []byte(`{`))
	f.Fuzz(func(t *testing.T, name, oldTenant, newTenant, sub string, op uint8, raw []byte) {
		cur := admissiontest.NamespaceObject(name, newTenant)
		old := admissiontest.NamespaceObject(name, oldTenant)
		req := admissionv1.AdmissionRequest{UID: "uid-ns", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Namespace"},
			Name: name, Operation: fuzzOps[int(op)%len(fuzzOps)], SubResource: sub}
		b, _ := json.Marshal(cur)
		if len(raw) > 0 {
			b = raw
		}
		ob, _ := json.Marshal(old)
		req.Object, req.OldObject = runtime.RawExtension{Raw: b}, runtime.RawExtension{Raw: ob}
		serveFuzz(t, h.ValidateNamespace, req, false)
	})
}
