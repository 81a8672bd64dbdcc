package admission_test

// AdmissionReview-level tests: every case is a JSON AdmissionReview POSTed through the real handler chain that
// admission.Register builds (limits → controller-runtime webhook → metrics → handler), against a fake API server and
// a hierarchy model holding the admissiontest world. Each case runs twice, with dryRun=false and dryRun=true, and
// must get the same verdict; every answer is checked against the AdmissionReview conformance rules.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/admissiontest"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

func TestMain(m *testing.M) {
	// controller-runtime complains (with a stack trace) when its logger is never set.
	logf.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

// want is the expected answer of one case.
type want struct {
	allowed bool
	code    int32    // status code; 0 means 200 when allowed, 403 when denied
	msg     []string // substrings of status.message
	notMsg  []string // substrings status.message must not contain (data of other tenants)
	fields  []string // fields that must appear in status.details.causes
	warn    string   // substring of some warning; "" means no warnings at all
	// Mutating cases: labels that must be present after applying the patch (nil: no patch expected), and
	// spec.accountRef.namespace after applying it ("" = not checked).
	labels  map[string]string
	patchNS string
}

type reviewCase struct {
	name  string
	path  string
	req   admissiontest.Req
	opts  func() admission.Handlers // policies (Dir is filled in); nil = defaults
	setup func(t testing.TB, w *admissiontest.World)
	want  want
}

func runReviewCases(t *testing.T, cases []reviewCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, dry := range []bool{false, true} {
				w := admissiontest.NewWorld()
				if tc.setup != nil {
					tc.setup(t, w)
				}
				var opts admission.Handlers
				if tc.opts != nil {
					opts = tc.opts()
				}
				mux := admissiontest.Mux(w.Handlers(opts), admission.Limits{})
				req := tc.req
				req.DryRun = dry
				checkReview(t, fmt.Sprintf("dryRun=%v", dry), mux, tc.path, req, tc.want)
			}
		})
	}
}

func checkReview(t *testing.T, label string, h http.Handler, path string, req admissiontest.Req, w want) {
	t.Helper()
	body := req.Body()
	uid := string(req.Request().UID)
	rec := admissiontest.Post(h, path, body)
	ar, err := admissiontest.Decode(rec.Body)
	if err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	ctype := rec.Header().Get("Content-Type")
	if _, bare := h.(*crwebhook.Webhook); bare {
		ctype = "application/json" // controller-runtime leaves it unset; admission.Register's chain sets it
	}
	for _, e := range admissiontest.Conformance(rec.Code, ctype, ar, uid, admissiontest.IsMutating(path)) {
		t.Errorf("%s: conformance: %s", label, e)
	}
	r := ar.Response
	if r.Allowed != w.allowed {
		t.Fatalf("%s: allowed = %v, want %v (status %+v)", label, r.Allowed, w.allowed, r.Result)
	}
	code := w.code
	if code == 0 {
		code = http.StatusOK
		if !w.allowed {
			code = http.StatusForbidden
		}
	}
	if r.Result == nil || r.Result.Code != code {
		t.Fatalf("%s: status %+v, want code %d", label, r.Result, code)
	}
	for _, s := range w.msg {
		if !strings.Contains(r.Result.Message, s) {
			t.Errorf("%s: message %q does not contain %q", label, r.Result.Message, s)
		}
	}
	for _, s := range w.notMsg {
		if strings.Contains(r.Result.Message, s) {
			t.Errorf("%s: message %q contains %q", label, r.Result.Message, s)
		}
	}
	for _, f := range w.fields {
		found := false
		if r.Result.Details != nil {
			for _, c := range r.Result.Details.Causes {
				found = found || c.Field == f
			}
		}
		if !found {
			t.Errorf("%s: no cause for field %q in %+v", label, f, r.Result.Details)
		}
	}
	if w.warn == "" && len(r.Warnings) > 0 {
		t.Errorf("%s: unexpected warnings %q", label, r.Warnings)
	}
	if w.warn != "" && !containsAny(r.Warnings, w.warn) {
		t.Errorf("%s: warnings %q do not contain %q", label, r.Warnings, w.warn)
	}
	switch {
	case w.labels == nil && r.Patch != nil:
		t.Errorf("%s: unexpected patch %s", label, r.Patch)
	case w.labels != nil:
		obj := applyPatch(t, req.Request().Object.Raw, r.Patch)
		got := labelsOf(obj)
		for k, v := range w.labels {
			if got[k] != v {
				t.Errorf("%s: after patch label %s = %q, want %q (patch %s)", label, k, got[k], v, r.Patch)
			}
		}
		if w.patchNS != "" {
			if ns := nested(obj, "spec", "accountRef", "namespace"); ns != w.patchNS {
				t.Errorf("%s: after patch spec.accountRef.namespace = %v, want %q (patch %s)", label, ns, w.patchNS, r.Patch)
			}
		}
	}
}

func containsAny(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// applyPatch applies a JSONPatch (nil = none) to doc and returns the result as a map.
func applyPatch(t testing.TB, doc, patch []byte) map[string]any {
	t.Helper()
	out := doc
	if patch != nil {
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			t.Fatalf("patch %s does not decode: %v", patch, err)
		}
		if out, err = p.Apply(doc); err != nil {
			t.Fatalf("patch %s does not apply to %s: %v", patch, doc, err)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("patched object is not JSON: %v", err)
	}
	return m
}

func labelsOf(obj map[string]any) map[string]string {
	out := map[string]string{}
	l, _ := nested(obj, "metadata", "labels").(map[string]any)
	for k, v := range l {
		out[k], _ = v.(string)
	}
	return out
}

func nested(obj map[string]any, path ...string) any {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// --- object builders ---

func tenant(id string, typ hierarchy.Type, parent, shadowOf string) *cmkv1.Tenant {
	return admissiontest.TenantObject(hierarchy.Tenant{ID: id, Type: typ, Parent: parent, ShadowOf: shadowOf})
}

func withRegion(t *cmkv1.Tenant, region string, audiences ...string) *cmkv1.Tenant {
	t.Spec.Region = region
	if audiences != nil {
		t.Spec.OIDCProvider = &cmkv1.OIDCProvider{Issuer: "https://idp.example.com", JWKSURI: "https://idp.example.com/jwks", Audiences: audiences}
	}
	return t
}

func unlabelled[T interface{ SetLabels(map[string]string) }](o T) T {
	o.SetLabels(nil)
	return o
}

func account(ns, name string) *cmkv1.Account { return admissiontest.AccountObject(ns, name, ns) }

func key(ns, name, accNS, acc string) *cmkv1.ServiceEncryptionKey {
	return admissiontest.KeyObject(ns, name, accNS, acc)
}

func tenantReq(op admissionv1.Operation, obj, old *cmkv1.Tenant) admissiontest.Req {
	r := admissiontest.Req{Kind: "Tenant", Op: op}
	if obj != nil {
		r.Object, r.Name = obj, obj.Name
	}
	if old != nil {
		r.OldObject, r.Name = old, old.Name
	}
	return r
}

func accountReq(op admissionv1.Operation, obj, old *cmkv1.Account) admissiontest.Req {
	r := admissiontest.Req{Kind: "Account", Op: op}
	if obj != nil {
		r.Object, r.Name, r.Namespace = obj, obj.Name, obj.Namespace
	}
	if old != nil {
		r.OldObject, r.Name, r.Namespace = old, old.Name, old.Namespace
	}
	return r
}

func keyReq(op admissionv1.Operation, obj, old *cmkv1.ServiceEncryptionKey) admissiontest.Req {
	r := admissiontest.Req{Kind: "ServiceEncryptionKey", Op: op}
	if obj != nil {
		r.Object, r.Name, r.Namespace = obj, obj.Name, obj.Namespace
	}
	if old != nil {
		r.OldObject, r.Name, r.Namespace = old, old.Name, old.Namespace
	}
	return r
}

func hookReq(obj *cmkv1.WebHookNotification) admissiontest.Req {
	return admissiontest.Req{Kind: "WebHookNotification", Object: obj, Name: obj.Name, Namespace: obj.Namespace}
}

func regions() admission.Handlers {
	return admission.Handlers{Regions: admission.StaticRegionPolicy{Regions: map[string][]string{
		admissiontest.Region: {"cmk-api"},
		"us-east":            nil,
	}}}
}

func groups() admission.Handlers {
	return admission.Handlers{Permissions: admission.TenantGroups{Prefix: "tenant:", Bypass: []string{"system:masters"}}}
}

func user(groups ...string) authenticationv1.UserInfo {
	return authenticationv1.UserInfo{Username: "bob", Groups: groups}
}

// --- fakes ---

type proberFunc func(ctx context.Context, a *cmkv1.Account) error

func (f proberFunc) ProbeKey(ctx context.Context, a *cmkv1.Account) error { return f(ctx, a) }

func withProber(p admission.KeyProber, timeout time.Duration) func() admission.Handlers {
	return func() admission.Handlers { return admission.Handlers{Keys: p, ProbeTimeout: timeout} }
}

// blockingProber waits far beyond any probe budget, honouring ctx as the KeyProber contract requires.
var blockingProber = proberFunc(func(ctx context.Context, _ *cmkv1.Account) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Minute):
		return nil
	}
})

type panicPermissions struct{}

func (panicPermissions) Authorize(context.Context, authenticationv1.UserInfo, string, string, admission.Action) error {
	panic("permissions backend exploded")
}

// --- Tenant ---

func TestReviewTenant(t *testing.T) {
	const (
		nested = hierarchy.Nested
		root   = hierarchy.Root
		shadow = hierarchy.Shadow
	)
	path := admission.PathValidateTenant
	payments := tenant(admissiontest.AcmePayments, nested, admissiontest.AcmeEU, "")
	dr := tenant(admissiontest.AcmeEUDR, shadow, "", admissiontest.AcmeEU)
	del := func(id string) admissiontest.Req {
		typ, parent, target := hierarchy.Root, "", ""
		for _, x := range admissiontest.Tenants {
			if x.ID == id {
				typ, parent, target = x.Type, x.Parent, x.ShadowOf
			}
		}
		return tenantReq(admissionv1.Delete, nil, tenant(id, typ, parent, target))
	}
	runReviewCases(t, []reviewCase{
		{name: "create root", path: path, req: tenantReq("", tenant("initech", root, "", ""), nil), want: want{allowed: true}},
		{name: "create nested under nested", path: path, req: tenantReq("", tenant("acme-eu-new", nested, admissiontest.AcmeEU, ""), nil), want: want{allowed: true}},
		{name: "create shadow of nested", path: path, req: tenantReq("", tenant("acme-eu-payments-dr", shadow, "", admissiontest.AcmePayments), nil), want: want{allowed: true}},
		{name: "create nested under a shadow denied", path: path,
			req:  tenantReq("", tenant("x", nested, admissiontest.AcmeEUDR, ""), nil),
			want: want{msg: []string{`Tenant "x"`, "spec.parent", `"acme-eu-dr" is a Shadow`}, fields: []string{"spec.parent"}}},
		{name: "create shadow of a shadow denied", path: path,
			req:  tenantReq("", tenant("x", shadow, "", admissiontest.AcmeEUDR), nil),
			want: want{msg: []string{"spec.shadowOf", `"acme-eu-dr" is itself a Shadow`}, fields: []string{"spec.shadowOf"}}},
		{name: "create with unknown parent denied", path: path,
			req:  tenantReq("", tenant("x", nested, "ghost", ""), nil),
			want: want{msg: []string{"spec.parent", `"ghost" does not exist`}}},
		{name: "create root with a parent denied", path: path,
			req:  tenantReq("", tenant("x", root, admissiontest.Acme, ""), nil),
			want: want{msg: []string{`a Root tenant has no parent`}}},
		{name: "create under a parent only the API server knows yet", path: path,
			setup: func(t testing.TB, w *admissiontest.World) {
				w.AddLive(t, tenant("acme-late", nested, admissiontest.Acme, ""))
			},
			req: tenantReq("", tenant("acme-late-child", nested, "acme-late", ""), nil), want: want{allowed: true}},
		{name: "label disagreeing with spec denied", path: path,
			req: tenantReq("", func() *cmkv1.Tenant {
				x := tenant("acme-eu-new", nested, admissiontest.AcmeEU, "")
				x.Labels[admission.ParentLabel] = admissiontest.Globex
				return x
			}(), nil),
			want: want{msg: []string{"metadata.labels[cmk.apeiro.io/parent]", `"globex"`, `"acme-eu"`}}},

		{name: "update without changes", path: path, req: tenantReq(admissionv1.Update, payments, payments), want: want{allowed: true}},
		{name: "update spec.type denied", path: path,
			req:  tenantReq(admissionv1.Update, tenant(admissiontest.AcmePayments, root, "", ""), payments),
			want: want{msg: []string{"spec.type", "is immutable", `was "Nested", now "Root"`, "spec.parent"}, fields: []string{"spec.type", "spec.parent"}}},
		{name: "update spec.parent denied", path: path,
			req:  tenantReq(admissionv1.Update, tenant(admissiontest.AcmePayments, nested, admissiontest.AcmeUS, ""), payments),
			want: want{msg: []string{"spec.parent", `was "acme-eu", now "acme-us"`}, fields: []string{"spec.parent"}}},
		{name: "update spec.shadowOf denied", path: path,
			req:  tenantReq(admissionv1.Update, tenant(admissiontest.AcmeEUDR, shadow, "", admissiontest.AcmeUS), dr),
			want: want{msg: []string{"spec.shadowOf", `was "acme-eu", now "acme-us"`}, fields: []string{"spec.shadowOf"}}},

		{name: "delete tenant with children and shadows denied", path: path, req: del(admissiontest.AcmeEU),
			want: want{msg: []string{`Tenant "acme-eu"`, "metadata.name", admissiontest.AcmePayments, admissiontest.AcmeEUDR}, fields: []string{"metadata.name"}}},
		{name: "delete root with children denied", path: path, req: del(admissiontest.Acme),
			want: want{msg: []string{admissiontest.AcmeEU, admissiontest.AcmeUS}}},
		{name: "delete leaf", path: path, setup: func(t testing.TB, w *admissiontest.World) { w.Release(t, admissiontest.AcmePayments) }, req: del(admissiontest.AcmePayments), want: want{allowed: true}},
		{name: "delete shadow", path: path, setup: func(t testing.TB, w *admissiontest.World) { w.Release(t, admissiontest.AcmeEUDR) }, req: del(admissiontest.AcmeEUDR), want: want{allowed: true}},
		{name: "delete tenant still owning a namespace and an account denied", path: path, req: del(admissiontest.AcmePayments),
			want: want{msg: []string{`"acme-eu-payments"`, "namespaces [acme-eu-payments]", "accounts [acme-eu-payments/main]"}, fields: []string{"metadata.name"}}},
		{name: "delete unknown tenant", path: path, req: del("nobody"), want: want{allowed: true}},
		{name: "delete with a child the informer has not seen denied", path: path, req: del(admissiontest.AcmePayments),
			setup: func(t testing.TB, w *admissiontest.World) {
				w.AddLive(t, tenant("acme-eu-payments-late", nested, admissiontest.AcmePayments, ""))
			},
			want: want{msg: []string{`"acme-eu-payments"`, "acme-eu-payments-late"}}},
		{name: "delete with a shadow the informer has not seen denied", path: path, req: del(admissiontest.Globex),
			setup: func(t testing.TB, w *admissiontest.World) {
				w.AddLive(t, tenant("globex-dr", shadow, "", admissiontest.Globex))
			},
			want: want{msg: []string{`"globex"`, "globex-dr"}}},

		{name: "region unknown denied", path: path, opts: regions,
			req:  tenantReq("", withRegion(tenant("initech", root, "", ""), "mars"), nil),
			want: want{msg: []string{"spec.region", `"mars"`, admissiontest.Region}, fields: []string{"spec.region"}}},
		{name: "audience not allowed in region denied", path: path, opts: regions,
			req:  tenantReq("", withRegion(tenant("initech", root, "", ""), admissiontest.Region, "cmk-api", "other"), nil),
			want: want{msg: []string{"spec.oidcProvider.audiences", `"other"`}, fields: []string{"spec.oidcProvider.audiences"}}},
		{name: "audience allowed in region", path: path, opts: regions,
			req: tenantReq("", withRegion(tenant("initech", root, "", ""), admissiontest.Region, "cmk-api"), nil), want: want{allowed: true}},
		{name: "region without audience list allows any", path: path, opts: regions,
			req: tenantReq("", withRegion(tenant("initech", root, "", ""), "us-east", "anything"), nil), want: want{allowed: true}},
		{name: "update keeping a region the policy no longer lists", path: path, opts: regions,
			req: tenantReq(admissionv1.Update, withRegion(tenant(admissiontest.Globex, root, "", ""), "legacy"),
				withRegion(tenant(admissiontest.Globex, root, "", ""), "legacy")),
			want: want{allowed: true}},
		{name: "update moving to an unknown region denied", path: path, opts: regions,
			req: tenantReq(admissionv1.Update, withRegion(tenant(admissiontest.Globex, root, "", ""), "mars"),
				tenant(admissiontest.Globex, root, "", "")),
			want: want{msg: []string{"spec.region", `"mars"`}}},
		{name: "identity provider over http denied", path: path,
			req: tenantReq("", func() *cmkv1.Tenant {
				x := withRegion(tenant("initech", root, "", ""), admissiontest.Region, "cmk-api")
				x.Spec.OIDCProvider.Issuer = "http://idp.example.com"
				x.Spec.OIDCProvider.JWKSURI = "https://169.254.169.254/jwks"
				return x
			}(), nil),
			want: want{msg: []string{"spec.oidcProvider.issuer", "spec.oidcProvider.jwks_uri"}, fields: []string{"spec.oidcProvider.issuer", "spec.oidcProvider.jwks_uri"}}},

		{name: "permissions: delete without the tenant admin group denied", path: path, opts: groups,
			req:  withUser(del(admissiontest.AcmeUS), user("tenant:acme-eu:admin")),
			want: want{msg: []string{`"bob"`, `"acme-us"`, "tenant:acme-us:admin"}}},
		{name: "permissions: delete as tenant admin", path: path, opts: groups, setup: func(t testing.TB, w *admissiontest.World) { w.Release(t, admissiontest.AcmeUS) },
			req: withUser(del(admissiontest.AcmeUS), user("tenant:acme-us:admin")), want: want{allowed: true}},
		{name: "permissions: bypass group", path: path, opts: groups, setup: func(t testing.TB, w *admissiontest.World) { w.Release(t, admissiontest.AcmeUS) },
			req: withUser(del(admissiontest.AcmeUS), user("system:masters")), want: want{allowed: true}},
		{name: "permissions: create without group denied", path: path, opts: groups,
			req:  tenantReq("", tenant("initech", root, "", ""), nil),
			want: want{msg: []string{"tenant:initech:admin"}}},
		{name: "permissions: attaching under a parent needs the parent's admin", path: path, opts: groups,
			req:  withUser(tenantReq("", tenant("initech", nested, admissiontest.Acme, ""), nil), user("tenant:initech:admin")),
			want: want{msg: []string{"tenant:acme:admin"}}},
		{name: "permissions: shadowing a tenant needs its admin", path: path, opts: groups,
			req:  withUser(tenantReq("", tenant("initech", shadow, "", admissiontest.Globex), nil), user("tenant:initech:admin")),
			want: want{msg: []string{"tenant:globex:admin"}}},
		{name: "permissions: admin of both may attach", path: path, opts: groups,
			req:  withUser(tenantReq("", tenant("initech", nested, admissiontest.Acme, ""), nil), user("tenant:initech:admin", "tenant:acme:admin")),
			want: want{allowed: true}},
	})
}

func withUser(r admissiontest.Req, u authenticationv1.UserInfo) admissiontest.Req {
	r.User = u
	return r
}

// --- Account ---

func TestReviewAccount(t *testing.T) {
	path := admission.PathValidateAccount
	eu := account(admissiontest.AcmeEU, "second")
	notFound := proberFunc(func(context.Context, *cmkv1.Account) error {
		return fmt.Errorf("keystore said: %w", admission.ErrKeyNotFound)
	})
	var probes atomic.Int32
	runReviewCases(t, []reviewCase{
		{name: "create", path: path, req: accountReq("", eu, nil), want: want{allowed: true}},
		{name: "unassigned namespace denied", path: path,
			req:  accountReq("", admissiontest.AccountObject(admissiontest.Unassigned, "a", ""), nil),
			want: want{msg: []string{"metadata.namespace", `"unassigned"`, "not assigned to a tenant"}, fields: []string{"metadata.namespace"}}},
		{name: "ownership label missing denied", path: path,
			req:  accountReq("", admissiontest.AccountObject(admissiontest.AcmeEU, "a", ""), nil),
			want: want{msg: []string{"metadata.labels[cmk.apeiro.io/tenant]", "missing"}}},
		{name: "ownership label of another tenant denied", path: path,
			req:  accountReq("", admissiontest.AccountObject(admissiontest.AcmeEU, "a", admissiontest.Globex), nil),
			want: want{msg: []string{"metadata.labels[cmk.apeiro.io/tenant]", `"globex"`, `"acme-eu"`}}},
		{name: "namespace of a tenant that does not exist denied", path: path,
			setup: func(t testing.TB, w *admissiontest.World) {
				w.AddLive(t, admissiontest.NamespaceObject("orphan", "ghost"))
			},
			req:  accountReq("", admissiontest.AccountObject("orphan", "a", "ghost"), nil),
			want: want{msg: []string{`"ghost"`, "does not exist"}}},
		{name: "aws with static credentials denied", path: path,
			req: accountReq("", func() *cmkv1.Account {
				a := account(admissiontest.AcmeEU, "aws")
				a.Spec.Keystore = cmkv1.KeystoreAWS
				a.Spec.Auth = &cmkv1.AccountAuth{SecretRef: &cmkv1.SecretKeySelector{Name: "creds", Key: "key"}}
				return a
			}(), nil),
			want: want{msg: []string{"spec.auth.secretRef"}, fields: []string{"spec.auth.secretRef"}}},
		{name: "update without changes", path: path, req: accountReq(admissionv1.Update, eu, eu), want: want{allowed: true}},
		{name: "update keystore and keyRef denied", path: path,
			req: accountReq(admissionv1.Update, func() *cmkv1.Account {
				a := account(admissiontest.AcmeEU, "second")
				a.Spec.Keystore, a.Spec.KeyRef = cmkv1.KeystoreOpenBao, "other-key"
				return a
			}(), eu),
			want: want{msg: []string{"spec.keystore", "spec.keyRef", "is immutable"}, fields: []string{"spec.keystore", "spec.keyRef"}}},
		{name: "delete account with keys denied", path: path,
			req:  accountReq(admissionv1.Delete, nil, account(admissiontest.AcmeEU, "main")),
			want: want{msg: []string{`"acme-eu/main"`, "is still referenced by ServiceEncryptionKeys"}, fields: []string{"metadata.name"}}},
		{name: "delete account used by another tenant's key: counted, not named", path: path,
			setup: func(t testing.TB, w *admissiontest.World) {
				w.AddLive(t, admissiontest.KeyObject(admissiontest.Globex, "mine", admissiontest.Globex, "main"))
				w.AddLive(t, admissiontest.KeyObject(admissiontest.AcmePayments, "secret-name", admissiontest.Globex, "main"))
			},
			req: accountReq(admissionv1.Delete, nil, account(admissiontest.Globex, "main")),
			want: want{msg: []string{"2 ServiceEncryptionKeys (globex/mine and 1 not named"}, notMsg: []string{"secret-name", admissiontest.AcmePayments},
				fields: []string{"metadata.name"}}},
		{name: "delete account without keys", path: path,
			req: accountReq(admissionv1.Delete, nil, account(admissiontest.Globex, "main")), want: want{allowed: true}},
		{name: "delete with a key the informer has not seen denied", path: path,
			setup: func(t testing.TB, w *admissiontest.World) {
				w.AddLive(t, admissiontest.KeyObject(admissiontest.Globex, "fresh", admissiontest.Globex, "main"))
			},
			req:  accountReq(admissionv1.Delete, nil, account(admissiontest.Globex, "main")),
			want: want{msg: []string{`"globex/main"`, "globex/fresh"}, fields: []string{"metadata.name"}}},
		// An Account's region is the keystore's own (e.g. an AWS region): the Platform Mesh region policy does not apply.
		{name: "keystore region outside the mesh regions allowed", path: path, opts: regions,
			req: accountReq("", func() *cmkv1.Account {
				a := account(admissiontest.AcmeEU, "second")
				a.Spec.Region = "us-east-1"
				return a
			}(), nil),
			want: want{allowed: true}},
		{name: "key not found denied", path: path, opts: withProber(notFound, 0),
			req:  accountReq("", eu, nil),
			want: want{msg: []string{"spec.keyRef", eu.Spec.KeyRef, "does not exist"}, fields: []string{"spec.keyRef"}}},
		{name: "keystore refusing the Account's role for its tenant denied", path: path,
			opts: withProber(proberFunc(func(context.Context, *cmkv1.Account) error {
				return fmt.Errorf("%w: roleArn: role of another tenant", keychain.ErrTenantBinding)
			}), 0),
			req:  accountReq("", eu, nil),
			want: want{msg: []string{"refused the Account's credentials for its tenant", "role of another tenant"}, fields: []string{"spec"}}},
		{name: "keystore error only warns", path: path,
			opts: withProber(proberFunc(func(context.Context, *cmkv1.Account) error { return errors.New("connection refused") }), 0),
			req:  accountReq("", eu, nil),
			want: want{allowed: true, warn: "L1 key not verified yet (connection refused)"}},
		{name: "keystore slower than the probe budget only warns", path: path, opts: withProber(blockingProber, 50*time.Millisecond),
			req:  accountReq("", eu, nil),
			want: want{allowed: true, warn: "did not answer in time"}},
		{name: "key is not probed on update", path: path,
			opts: withProber(proberFunc(func(context.Context, *cmkv1.Account) error {
				probes.Add(1)
				return admission.ErrKeyNotFound
			}), 0),
			req: accountReq(admissionv1.Update, eu, eu), want: want{allowed: true}},
		{name: "probe that answers", path: path, opts: withProber(proberFunc(func(context.Context, *cmkv1.Account) error { return nil }), 0),
			req: accountReq("", eu, nil), want: want{allowed: true}},
		{name: "permissions: not a tenant admin denied", path: path, opts: groups,
			req:  withUser(accountReq("", eu, nil), user("tenant:globex:admin")),
			want: want{msg: []string{`"bob"`, "tenant:acme-eu:admin"}}},
		{name: "permissions: tenant admin", path: path, opts: groups,
			req: withUser(accountReq("", eu, nil), user("tenant:acme-eu:admin")), want: want{allowed: true}},
	})
	if n := probes.Load(); n != 0 {
		t.Errorf("KeyProber called %d times on UPDATE, want 0", n)
	}
}

// --- ServiceEncryptionKey ---

func TestReviewServiceEncryptionKey(t *testing.T) {
	path := admission.PathValidateServiceEncryption
	const (
		acme     = admissiontest.Acme
		eu       = admissiontest.AcmeEU
		payments = admissiontest.AcmePayments
		dr       = admissiontest.AcmeEUDR
		us       = admissiontest.AcmeUS
		globex   = admissiontest.Globex
	)
	ref := func(owner, accountOwner string, allowed bool, msg ...string) reviewCase {
		name := fmt.Sprintf("%s uses account of %s", owner, accountOwner)
		w := want{allowed: allowed}
		if !allowed {
			w.msg = append([]string{"spec.accountRef", fmt.Sprintf("tenant %q", owner), "is not found or not usable"}, msg...)
			w.notMsg = []string{fmt.Sprintf("tenant %q", accountOwner), "cross-tenant"}
			w.fields = []string{"spec.accountRef"}
		}
		return reviewCase{name: name, path: path, req: keyReq("", key(owner, "k-new", accountOwner, "main"), nil), want: w}
	}
	spiffe := func(ids []string, allowed bool, opts func() admission.Handlers, msg ...string) reviewCase {
		k := key(eu, "k-new", "", "main")
		k.Spec.WorkloadIdentities = ids
		w := want{allowed: allowed, msg: msg}
		if !allowed {
			w.fields = []string{fmt.Sprintf("spec.workloadIdentities[%d]", len(ids)-1)}
		}
		return reviewCase{name: "spiffe " + strings.Join(ids, " "), path: path, opts: opts, req: keyReq("", k, nil), want: w}
	}
	k1 := key(eu, "k1", eu, "main")
	cases := []reviewCase{
		{name: "same tenant, implicit account namespace", path: path, req: keyReq("", key(eu, "k-new", "", "main"), nil), want: want{allowed: true}},
		{name: "account-ref label naming another account denied", path: path, req: keyReq("", func() *cmkv1.ServiceEncryptionKey {
			k := key(eu, "k-new", eu, "main")
			k.Labels[admission.AccountRefLabel] = admission.AccountRefValue(admissiontest.AccountKeyOf(globex))
			return k
		}(), nil), want: want{msg: []string{"does not match spec.accountRef acme-eu/main"}, fields: []string{"metadata.labels[" + admission.AccountRefLabel + "]"}}},
		ref(eu, eu, true),
		ref(payments, eu, true),   // parent account
		ref(payments, acme, true), // grandparent (root) account
		ref(eu, dr, true),         // shadow of self
		ref(payments, dr, true),   // shadow of an ancestor
		ref(dr, eu, true),         // shadow uses its target's account
		ref(dr, acme, true),       // shadow uses its target's ancestor's account
		ref(dr, payments, false),  // shadow uses its target's child's account
		ref(eu, globex, false),
		ref(eu, us, false),       // sibling
		ref(payments, us, false), // parent's sibling
		ref(acme, eu, false),     // descendant
		ref(globex, dr, false),   // another root's shadow
		{name: "unknown account denied", path: path, req: keyReq("", key(eu, "k-new", eu, "missing"), nil),
			want: want{msg: []string{"spec.accountRef", `"acme-eu/missing"`, "is not found or not usable"}}},
		{name: "account only the API server knows yet", path: path,
			setup: func(t testing.TB, w *admissiontest.World) { w.AddLive(t, admissiontest.AccountObject(eu, "fresh", eu)) },
			req:   keyReq("", key(payments, "k-new", eu, "fresh"), nil), want: want{allowed: true}},
		{name: "account of another tenant only the API server knows yet denied", path: path,
			setup: func(t testing.TB, w *admissiontest.World) {
				w.AddLive(t, admissiontest.AccountObject(globex, "fresh", globex))
			},
			req:  keyReq("", key(eu, "k-new", globex, "fresh"), nil),
			want: want{msg: []string{`tenant "acme-eu"`, "is not found or not usable"}, notMsg: []string{`tenant "globex"`}}},
		{name: "unowned account denied", path: path,
			setup: func(t testing.TB, w *admissiontest.World) {
				w.AddLive(t, admissiontest.AccountObject(eu, "unowned", ""))
			},
			req:  keyReq("", key(eu, "k-new", eu, "unowned"), nil),
			want: want{msg: []string{`"acme-eu/unowned"`}}},
		{name: "unassigned namespace denied", path: path,
			req:  keyReq("", unlabelled(key(admissiontest.Unassigned, "k-new", eu, "main")), nil),
			want: want{msg: []string{"metadata.namespace", `"unassigned"`}}},
		{name: "ownership label missing denied", path: path,
			req:  keyReq("", unlabelled(key(eu, "k-new", eu, "main")), nil),
			want: want{msg: []string{"metadata.labels[cmk.apeiro.io/tenant]", "missing"}}},
		{name: "ownership label of another tenant denied", path: path,
			req: keyReq("", func() *cmkv1.ServiceEncryptionKey {
				k := key(eu, "k-new", eu, "main")
				k.Labels[cmkv1.TenantLabel] = globex
				return k
			}(), nil),
			want: want{msg: []string{`"globex"`, `"acme-eu"`}}},
		{name: "update without changes", path: path, req: keyReq(admissionv1.Update, k1, k1), want: want{allowed: true}},
		{name: "update account and algorithm denied", path: path,
			req: keyReq(admissionv1.Update, func() *cmkv1.ServiceEncryptionKey {
				k := key(eu, "k1", acme, "other")
				k.Spec.Algorithm = cmkv1.AlgorithmRSA4096
				return k
			}(), k1),
			want: want{msg: []string{"spec.accountRef.name", "spec.accountRef.namespace", "spec.algorithm", "is immutable"},
				fields: []string{"spec.accountRef.name", "spec.accountRef.namespace", "spec.algorithm"}}},
		{name: "update making the implicit account namespace explicit", path: path,
			req: keyReq(admissionv1.Update, k1, key(eu, "k1", "", "main")), want: want{allowed: true}},
		{name: "delete", path: path, req: keyReq(admissionv1.Delete, nil, k1), want: want{allowed: true}},

		spiffe([]string{"spiffe://cluster.local/ns/acme-eu/sa/app", "spiffe://example.org/a.b-c_D/9"}, true, nil),
		spiffe([]string{"spiffe://Example.org/x"}, false, nil, "trust domain has character 'E'"),
		spiffe([]string{"https://example.org/x"}, false, nil, "must start with spiffe://"),
		spiffe([]string{"spiffe://example.org"}, false, nil, "needs a path"),
		spiffe([]string{"spiffe:///x"}, false, nil, "trust domain is empty"),
		spiffe([]string{"spiffe://example.org/a//b"}, false, nil, `segment ""`),
		spiffe([]string{"spiffe://example.org/../x"}, false, nil, `segment ".."`),
		spiffe([]string{"spiffe://example.org/x?y=1"}, false, nil, "'?'"),
		spiffe([]string{"spiffe://example.org:8443/x"}, false, nil, "':'"),
		spiffe([]string{"spiffe://user@example.org/x"}, false, nil, "'@'"),
		spiffe([]string{"spiffe://example.org/" + strings.Repeat("a", 2040)}, false, nil, "2048"),
		spiffe([]string{"spiffe://cluster.local/ok", "spiffe://other.org/x"}, false,
			func() admission.Handlers { return admission.Handlers{TrustDomains: []string{"cluster.local"}} }, `"other.org" is not trusted`),
		spiffe([]string{"spiffe://cluster.local/ok"}, true,
			func() admission.Handlers { return admission.Handlers{TrustDomains: []string{"cluster.local"}} }),
	}
	runReviewCases(t, cases)
}

// --- WebHookNotification ---

func TestReviewWebHookNotification(t *testing.T) {
	path := admission.PathValidateWebHookNotification
	hook := func(url string, signed bool) admissiontest.Req {
		return hookReq(admissiontest.NotificationObject(admissiontest.AcmeEU, "alerts", url, signed))
	}
	var cases []reviewCase
	for _, url := range []string{
		"http://hooks.example.com/x",
		"https://10.0.0.1/hook",
		"https://169.254.169.254/latest/meta-data/",
		"https://localhost/hook",
		"https://localhost:8443/hook",
		"https://127.0.0.1/hook",
		"https://[::1]/hook",
		"https://metadata.google.internal/x",
		"https://kubernetes.default.svc/x",
		"https://2130706433/x",
		"https://user:pw@hooks.example.com/x",
		"",
	} {
		cases = append(cases, reviewCase{name: "refused " + url, path: path, req: hook(url, true),
			want: want{msg: []string{`WebHookNotification "alerts"`, "spec.url"}, fields: []string{"spec.url"}}})
	}
	cases = append(cases,
		reviewCase{name: "https public, signed", path: path, req: hook("https://hooks.example.com/cmk", true), want: want{allowed: true}},
		reviewCase{name: "https public, unsigned warns", path: path, req: hook("https://hooks.example.com/cmk", false),
			want: want{allowed: true, warn: "spec.signingSecretRef is not set"}},
		reviewCase{name: "unassigned namespace denied", path: path,
			req:  hookReq(unlabelled(admissiontest.NotificationObject(admissiontest.Unassigned, "alerts", "https://hooks.example.com/x", true))),
			want: want{msg: []string{"metadata.namespace"}}},
		reviewCase{name: "delete", path: path,
			req: admissiontest.Req{Kind: "WebHookNotification", Op: admissionv1.Delete, Namespace: admissiontest.AcmeEU, Name: "alerts",
				OldObject: admissiontest.NotificationObject(admissiontest.AcmeEU, "alerts", "http://x", false)},
			want: want{allowed: true}},
	)
	runReviewCases(t, cases)
}

// --- upstream operations.openkcm.io Tenant ---

func TestReviewOpenKCMTenant(t *testing.T) {
	path := admission.PathValidateOpenKCMTenant
	obj := func(region, issuer, jwks string, audiences ...string) map[string]any {
		spec := map[string]any{"region": region}
		if issuer != "" {
			spec["oidcProvider"] = map[string]any{"issuer": issuer, "jwks_uri": jwks, "audiences": audiences}
		}
		return map[string]any{
			"apiVersion": "operations.openkcm.io/v1alpha1", "kind": "Tenant",
			"metadata": map[string]any{"name": "upstream", "namespace": "kcp-ws"},
			"spec":     spec,
		}
	}
	req := func(o map[string]any) admissiontest.Req {
		return admissiontest.Req{Group: admission.OpenKCMGroup, Kind: "Tenant", Name: "upstream", Namespace: "kcp-ws", Object: o}
	}
	const idp, jwks = "https://idp.example.com", "https://idp.example.com/jwks"
	runReviewCases(t, []reviewCase{
		{name: "valid", path: path, opts: regions, req: req(obj(admissiontest.Region, idp, jwks, "cmk-api")), want: want{allowed: true}},
		{name: "valid without identity provider", path: path, req: req(obj("anywhere", "", "")), want: want{allowed: true}},
		{name: "issuer over http denied", path: path, req: req(obj(admissiontest.Region, "http://idp.example.com", jwks)),
			want: want{msg: []string{`Tenant "upstream"`, "spec.oidcProvider.issuer"}, fields: []string{"spec.oidcProvider.issuer"}}},
		{name: "jwks on a private address denied", path: path, req: req(obj(admissiontest.Region, idp, "https://10.0.0.1/jwks")),
			want: want{msg: []string{"spec.oidcProvider.jwks_uri"}}},
		{name: "region missing denied", path: path, req: req(obj("", idp, jwks)),
			want: want{msg: []string{"spec.region", "is required"}}},
		{name: "region unknown denied", path: path, opts: regions, req: req(obj("mars", idp, jwks)),
			want: want{msg: []string{"spec.region", `"mars"`}}},
		{name: "audience not allowed denied", path: path, opts: regions, req: req(obj(admissiontest.Region, idp, jwks, "other")),
			want: want{msg: []string{"spec.oidcProvider.audiences", `"other"`}}},
		{name: "delete", path: path,
			req:  admissiontest.Req{Group: admission.OpenKCMGroup, Kind: "Tenant", Op: admissionv1.Delete, Name: "upstream", Namespace: "kcp-ws", OldObject: obj("", "", "")},
			want: want{allowed: true}},
	})
}

// --- mutating endpoints ---

func TestReviewMutate(t *testing.T) {
	const eu = admissiontest.AcmeEU
	rawKeyWithoutRef := []byte(`{"apiVersion":"cmk.apeiro.io/v1alpha1","kind":"ServiceEncryptionKey","metadata":{"name":"k-new","namespace":"acme-eu"},"spec":{"algorithm":"AES256"}}`)
	runReviewCases(t, []reviewCase{
		{name: "tenant labels stamped", path: admission.PathMutateTenant,
			req:  tenantReq("", unlabelled(tenant("acme-eu-new", hierarchy.Nested, eu, "")), nil),
			want: want{allowed: true, labels: map[string]string{cmkv1.TenantLabel: "acme-eu-new", admission.ParentLabel: eu}}},
		// A wrong label is never rewritten: the validating webhook denies it (see TestReviewTenant).
		{name: "tenant wrong label left for validation, missing one added", path: admission.PathMutateTenant,
			req: tenantReq("", func() *cmkv1.Tenant {
				x := tenant("acme-eu-new-dr", hierarchy.Shadow, "", eu)
				x.Labels = map[string]string{admission.ShadowOfLabel: admissiontest.Globex, "team": "crypto"}
				return x
			}(), nil),
			want: want{allowed: true, labels: map[string]string{cmkv1.TenantLabel: "acme-eu-new-dr", admission.ShadowOfLabel: admissiontest.Globex, "team": "crypto"}}},
		{name: "tenant with a stale parent label is not patched", path: admission.PathMutateTenant,
			req: tenantReq(admissionv1.Update, func() *cmkv1.Tenant {
				x := tenant(admissiontest.Globex, hierarchy.Root, "", "")
				x.Labels[admission.ParentLabel] = admissiontest.Acme
				return x
			}(), tenant(admissiontest.Globex, hierarchy.Root, "", "")),
			want: want{allowed: true}},
		{name: "tenant with correct labels is not patched", path: admission.PathMutateTenant,
			req: tenantReq("", tenant("acme-eu-new", hierarchy.Nested, eu, ""), nil), want: want{allowed: true}},
		{name: "account label stamped", path: admission.PathMutateAccount,
			req:  accountReq("", unlabelled(account(eu, "second")), nil),
			want: want{allowed: true, labels: map[string]string{cmkv1.TenantLabel: eu}}},
		{name: "account label added next to others", path: admission.PathMutateAccount,
			req: accountReq("", func() *cmkv1.Account {
				a := account(eu, "second")
				a.Labels = map[string]string{"app": "x"}
				return a
			}(), nil),
			want: want{allowed: true, labels: map[string]string{cmkv1.TenantLabel: eu, "app": "x"}}},
		{name: "account label of another tenant is not rewritten", path: admission.PathMutateAccount,
			req:  accountReq("", admissiontest.AccountObject(eu, "second", admissiontest.Globex), nil),
			want: want{allowed: true}},
		{name: "account in unassigned namespace denied", path: admission.PathMutateAccount,
			req:  accountReq("", admissiontest.AccountObject(admissiontest.Unassigned, "a", ""), nil),
			want: want{msg: []string{"metadata.namespace", `"unassigned"`}}},
		{name: "key: label and implicit account namespace", path: admission.PathMutateServiceEncryptionKey,
			req:  keyReq("", unlabelled(key(eu, "k-new", "", "main")), nil),
			want: want{allowed: true, labels: map[string]string{cmkv1.TenantLabel: eu}, patchNS: eu}},
		{name: "key: explicit account namespace kept", path: admission.PathMutateServiceEncryptionKey,
			req:  keyReq("", unlabelled(key(eu, "k-new", admissiontest.Acme, "main")), nil),
			want: want{allowed: true, labels: map[string]string{cmkv1.TenantLabel: eu}, patchNS: admissiontest.Acme}},
		{name: "key without accountRef gets a patch that applies", path: admission.PathMutateServiceEncryptionKey,
			req:  admissiontest.Req{Kind: "ServiceEncryptionKey", Namespace: eu, Name: "k-new", Object: rawKeyWithoutRef},
			want: want{allowed: true, labels: map[string]string{cmkv1.TenantLabel: eu}}},
		{name: "key gets the account-ref label", path: admission.PathMutateServiceEncryptionKey,
			req: keyReq(admissionv1.Create, func() *cmkv1.ServiceEncryptionKey {
				k := key(eu, "k-new", eu, "main")
				delete(k.Labels, admission.AccountRefLabel)
				return k
			}(), nil),
			want: want{allowed: true, labels: map[string]string{admission.AccountRefLabel: admission.AccountRefValue(admissiontest.AccountKeyOf(eu))}}},
		{name: "key update already complete is not patched", path: admission.PathMutateServiceEncryptionKey,
			req: keyReq(admissionv1.Update, key(eu, "k1", eu, "main"), key(eu, "k1", eu, "main")), want: want{allowed: true}},
		{name: "webhooknotification label stamped", path: admission.PathMutateWebHookNotification,
			req:  hookReq(unlabelled(admissiontest.NotificationObject(eu, "alerts", "https://hooks.example.com/x", true))),
			want: want{allowed: true, labels: map[string]string{cmkv1.TenantLabel: eu}}},
		{name: "delete is not patched", path: admission.PathMutateAccount,
			req: accountReq(admissionv1.Delete, nil, account(eu, "main")), want: want{allowed: true}},
	})
}

// --- requests the handlers must refuse to judge ---

func TestReviewWrongKind(t *testing.T) {
	runReviewCases(t, []reviewCase{
		{name: "account sent to the tenant endpoint", path: admission.PathValidateTenant,
			req: accountReq("", account(admissiontest.AcmeEU, "a"), nil), want: want{code: http.StatusBadRequest, msg: []string{"Tenant", "Account"}}},
		{name: "tenant sent to the account mutator", path: admission.PathMutateAccount,
			req: tenantReq("", tenant("x", hierarchy.Root, "", ""), nil), want: want{code: http.StatusBadRequest, msg: []string{"Account", "Tenant"}}},
		{name: "cmk tenant sent to the openkcm endpoint", path: admission.PathValidateOpenKCMTenant,
			req: tenantReq("", tenant("x", hierarchy.Root, "", ""), nil), want: want{code: http.StatusBadRequest, msg: []string{admission.OpenKCMGroup}}},
		{name: "openkcm tenant sent to the cmk tenant endpoint", path: admission.PathValidateTenant,
			req:  admissiontest.Req{Group: admission.OpenKCMGroup, Kind: "Tenant", Name: "x", Object: map[string]any{"spec": map[string]any{}}},
			want: want{code: http.StatusBadRequest, msg: []string{cmkv1.GroupVersion.Group}}},
		{name: "object that does not decode", path: admission.PathValidateServiceEncryption,
			req:  admissiontest.Req{Kind: "ServiceEncryptionKey", Namespace: admissiontest.AcmeEU, Name: "k", Object: []byte(`{"spec":"not an object"}`)},
			want: want{code: http.StatusBadRequest, msg: []string{"does not decode"}}},
		{name: "create without object", path: admission.PathValidateAccount,
			req:  admissiontest.Req{Kind: "Account", Namespace: admissiontest.AcmeEU, Name: "a"},
			want: want{code: http.StatusBadRequest, msg: []string{"object is empty"}}},
		{name: "update with an old object that does not decode", path: admission.PathValidateTenant,
			req:  admissiontest.Req{Kind: "Tenant", Op: admissionv1.Update, Name: "globex", Object: tenant("globex", hierarchy.Root, "", ""), OldObject: []byte(`[]`)},
			want: want{code: http.StatusBadRequest, msg: []string{"old object"}}},
	})
}

// TestReviewEnvelope covers what reaches the chain before a handler: bodies that are no AdmissionReview, the wrong
// method or content type, and bodies over the limit.
func TestReviewEnvelope(t *testing.T) {
	const limit = 64 << 10
	w := admissiontest.NewWorld()
	mux := admissiontest.Mux(w.Handlers(admission.Handlers{}), admission.Limits{MaxBodyBytes: limit})
	big := bytes.Repeat([]byte(" "), limit+1)

	type answer struct {
		status  int    // HTTP status
		code    int32  // AdmissionResponse status code; 0 = no AdmissionReview expected
		message string // substring of the status message (or plain-text body)
	}
	str := func(s string) func() io.Reader { return func() io.Reader { return strings.NewReader(s) } }
	review := admissiontest.Req{Kind: "Tenant", Name: "x", Object: tenant("x", hierarchy.Root, "", "")}.Body()
	cases := []struct {
		name   string
		method string
		ctype  string
		body   func() io.Reader // nil: no body
		length int64            // -1: chunked (unknown length); 0: from the body
		want   answer
	}{
		{"malformed JSON", http.MethodPost, "application/json", str(`{"apiVersion":`), 0, answer{200, 400, ""}},
		{"JSON that is not an AdmissionReview", http.MethodPost, "application/json", str(`[1,2,3]`), 0, answer{200, 400, ""}},
		{"AdmissionReview without request", http.MethodPost, "application/json", str(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), 0, answer{200, 400, ""}},
		{"empty body", http.MethodPost, "application/json", nil, 0, answer{200, 400, "request body is empty"}},
		{"wrong content type", http.MethodPost, "text/plain", func() io.Reader { return bytes.NewReader(review) }, 0, answer{200, 400, "contentType=text/plain"}},
		{"oversized with Content-Length", http.MethodPost, "application/json", func() io.Reader { return bytes.NewReader(big) }, 0, answer{413, 0, "limit is 65536 bytes"}},
		{"oversized chunked", http.MethodPost, "application/json", func() io.Reader { return io.MultiReader(bytes.NewReader(big)) }, -1, answer{413, 0, "limit is 65536 bytes"}},
		{"GET", http.MethodGet, "", nil, 0, answer{405, 0, "only POST"}},
		{"PUT", http.MethodPut, "application/json", str(`{}`), 0, answer{405, 0, "only POST"}},
	}
	for _, path := range admissiontest.Paths(w.Handlers(admission.Handlers{})) {
		for _, tc := range cases {
			t.Run(strings.TrimPrefix(path, "/")+"/"+tc.name, func(t *testing.T) {
				var body io.Reader
				if tc.body != nil {
					body = tc.body()
				}
				req := httptest.NewRequest(tc.method, path, body)
				if tc.length != 0 {
					req.ContentLength = tc.length
				}
				if tc.ctype != "" {
					req.Header.Set("Content-Type", tc.ctype)
				}
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, req)
				if rec.Code != tc.want.status {
					t.Fatalf("HTTP %d (%s), want %d", rec.Code, rec.Body.String(), tc.want.status)
				}
				if tc.want.status == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != http.MethodPost {
					t.Errorf("Allow header %q, want POST", rec.Header().Get("Allow"))
				}
				if tc.want.code == 0 {
					if !strings.Contains(rec.Body.String(), tc.want.message) {
						t.Errorf("body %q does not contain %q", rec.Body.String(), tc.want.message)
					}
					return
				}
				ar, err := admissiontest.Decode(rec.Body)
				if err != nil {
					t.Fatal(err)
				}
				r := ar.Response
				if r.Allowed || r.UID != "" || r.Result == nil || r.Result.Code != tc.want.code || r.Patch != nil {
					t.Fatalf("response %+v (status %+v), want errored %d without uid or patch", r, r.Result, tc.want.code)
				}
				if !strings.Contains(r.Result.Message, tc.want.message) {
					t.Errorf("message %q does not contain %q", r.Result.Message, tc.want.message)
				}
			})
		}
	}
}

// TestReviewEnvelopeVersion checks the answer comes in the AdmissionReview version the request used.
func TestReviewEnvelopeVersion(t *testing.T) {
	w := admissiontest.NewWorld()
	mux := admissiontest.Mux(w.Handlers(admission.Handlers{}), admission.Limits{})
	body := admissiontest.Req{Kind: "Tenant", Name: "initech", Object: tenant("initech", hierarchy.Root, "", "")}.Body()
	body = bytes.Replace(body, []byte(`"apiVersion":"admission.k8s.io/v1"`), []byte(`"apiVersion":"admission.k8s.io/v1beta1"`), 1)
	rec := admissiontest.Post(mux, admission.PathValidateTenant, body)
	ar, err := admissiontest.Decode(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ar.APIVersion != "admission.k8s.io/v1beta1" || !ar.Response.Allowed || ar.Response.UID != "uid-tenant-initech" {
		t.Fatalf("got %s %+v, want an allowed admission.k8s.io/v1beta1 answer with the request uid", ar.APIVersion, ar.Response)
	}
}

// TestReviewPanics: a panic anywhere below the webhook becomes an errored answer that still carries the UID.
func TestReviewPanics(t *testing.T) {
	t.Run("dependency panics inside the Register chain", func(t *testing.T) {
		w := admissiontest.NewWorld()
		mux := admissiontest.Mux(w.Handlers(admission.Handlers{Permissions: panicPermissions{}}), admission.Limits{})
		for _, path := range []string{admission.PathValidateTenant, admission.PathValidateAccount} {
			req := tenantReq("", tenant("initech", hierarchy.Root, "", ""), nil)
			if path == admission.PathValidateAccount {
				req = accountReq("", account(admissiontest.AcmeEU, "second"), nil)
			}
			checkReview(t, path, mux, path, req, want{code: http.StatusInternalServerError, msg: []string{"panic", "permissions backend exploded"}})
		}
	})
	t.Run("panicking handler wrapped with RecoverPanic", func(t *testing.T) {
		wh := &crwebhook.Webhook{
			Handler: crwebhook.HandlerFunc(func(context.Context, crwebhook.Request) crwebhook.Response {
				var m map[string]int
				m["boom"]++ // nil map write
				return crwebhook.Allowed("")
			}),
			RecoverPanic: new(true),
		}
		checkReview(t, "bare", wh, admission.PathValidateTenant, tenantReq("", tenant("initech", hierarchy.Root, "", ""), nil),
			want{code: http.StatusInternalServerError, msg: []string{"panic", "nil map"}})
	})
}

// TestReviewUIDEcho sends one request per endpoint and verdict class with distinct UIDs, interleaved, and checks
// every answer carries its own UID.
func TestReviewUIDEcho(t *testing.T) {
	w := admissiontest.NewWorld()
	notFound := proberFunc(func(context.Context, *cmkv1.Account) error { return admission.ErrKeyNotFound })
	mux := admissiontest.Mux(w.Handlers(admission.Handlers{Keys: notFound}), admission.Limits{})
	reqs := map[string]admissiontest.Req{
		admission.PathValidateTenant:              tenantReq("", tenant("initech", hierarchy.Root, "", ""), nil),                       // allowed
		admission.PathValidateAccount:             accountReq("", account(admissiontest.AcmeEU, "a"), nil),                             // denied
		admission.PathValidateServiceEncryption:   keyReq("", key(admissiontest.AcmeEU, "k", admissiontest.Globex, "main"), nil),       // denied
		admission.PathMutateServiceEncryptionKey:  keyReq("", unlabelled(key(admissiontest.AcmeEU, "k", "", "main")), nil),             // patched
		admission.PathValidateWebHookNotification: {Kind: "WebHookNotification", Namespace: "acme-eu", Name: "x", Object: []byte(`1`)}, // errored
	}
	done := make(chan error, 100)
	n := 0
	for i := 0; i < 10; i++ {
		for path, r := range reqs {
			r.UID = fmt.Sprintf("uid-%d-%s", i, path)
			n++
			go func() {
				rec := admissiontest.Post(mux, path, r.Body())
				ar, err := admissiontest.Decode(rec.Body)
				if err != nil {
					done <- err
					return
				}
				if string(ar.Response.UID) != r.UID {
					done <- fmt.Errorf("%s: uid %q, want %q", path, ar.Response.UID, r.UID)
					return
				}
				done <- nil
			}()
		}
	}
	for ; n > 0; n-- {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
