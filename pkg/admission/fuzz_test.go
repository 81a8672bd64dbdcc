package admission_test

// Fuzz targets. Each runs its inline seed corpus under plain `go test`; explore with e.g.
//
//	go test -run '^$' -fuzz '^FuzzAdmissionReview$' -fuzztime 60s ./pkg/admission/
//
// Panics are NOT recovered here (RecoverPanic=false) so that a crash in a handler fails the target instead of being
// turned into an errored answer.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	neturl "net/url"
	"regexp"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/types"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/admissiontest"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

var fuzzOps = []admissionv1.Operation{admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect, ""}

// FuzzAdmissionReview POSTs arbitrary bytes to every endpoint through the Register chain: the answer is always a
// well-formed AdmissionReview with a status, never a crash.
func FuzzAdmissionReview(f *testing.F) {
	w := admissiontest.NewWorld()
	h := w.Handlers(regions())
	mux := admissiontest.Mux(h, admission.Limits{})
	paths := admissiontest.Paths(h)
	for i, path := range paths {
		_ = path
		f.Add(uint8(i), admissiontest.Req{Kind: "Tenant", Name: "initech", Object: tenant("initech", hierarchy.Root, "", "")}.Body())
		f.Add(uint8(i), admissiontest.Req{Kind: "Account", Namespace: "acme-eu", Name: "a", Object: account("acme-eu", "a")}.Body())
		f.Add(uint8(i), keyReq("", key("acme-eu", "k", "globex", "main"), nil).Body())
		f.Add(uint8(i), hookReq(admissiontest.NotificationObject("acme-eu", "h", "https://10.0.0.1/", false)).Body())
		f.Add(uint8(i), admissiontest.Req{Group: admission.OpenKCMGroup, Kind: "Tenant", Name: "u", Object: []byte(`{"spec":{"region":"x"}}`)}.Body())
	}
	f.Add(uint8(0), []byte(``))
	f.Add(uint8(1), []byte(`{`))
	f.Add(uint8(2), []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"DELETE"}}`))
	f.Add(uint8(3), []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"cmk.apeiro.io","kind":"Tenant"},"operation":"UPDATE","object":null,"oldObject":{"metadata":null}}}`))
	f.Add(uint8(4), []byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"cmk.apeiro.io","kind":"ServiceEncryptionKey"},"namespace":"acme-eu","operation":"CREATE","object":{"metadata":{"labels":{"cmk.apeiro.io/tenant":"acme-eu"}},"spec":{"accountRef":{"name":"main","namespace":"globex"},"workloadIdentities":["spiffe://x/../y"]}}}}`))
	f.Fuzz(func(t *testing.T, pi uint8, body []byte) {
		path := paths[int(pi)%len(paths)]
		rec := admissiontest.Post(mux, path, body)
		if rec.Code == http.StatusRequestEntityTooLarge && int64(len(body)) > admission.DefaultMaxBodyBytes {
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("HTTP %d: %s", rec.Code, rec.Body.String())
		}
		ar, err := admissiontest.Decode(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		r := ar.Response
		if r.Result == nil || r.Result.Code == 0 {
			t.Fatalf("response without status: %+v", r)
		}
		if !r.Allowed && r.Result.Message == "" {
			t.Fatalf("denial without message: %+v", r.Result)
		}
		if (r.Patch == nil) != (r.PatchType == nil) || (r.Patch != nil && (!admissiontest.IsMutating(path) || !r.Allowed)) {
			t.Fatalf("patch %q / patchType %v not allowed here (allowed=%v)", r.Patch, r.PatchType, r.Allowed)
		}
		// Either the envelope was refused before any request was read (no uid, 400) or the uid is echoed.
		var sent struct {
			Request *struct {
				UID types.UID `json:"uid"`
			} `json:"request"`
		}
		if json.Unmarshal(body, &sent) == nil && sent.Request != nil && r.UID != sent.Request.UID && !(r.UID == "" && r.Result.Code == http.StatusBadRequest) {
			t.Fatalf("uid %q, request had %q", r.UID, sent.Request.UID)
		}
	})
}

// serveFuzz runs one request through a controller-runtime webhook (panics not recovered) and checks the invariants
// every answer must meet. It returns the response for target-specific checks.
func serveFuzz(t *testing.T, fn crwebhook.HandlerFunc, req admissionv1.AdmissionRequest, mutating bool) crwebhook.Response {
	t.Helper()
	wh := &crwebhook.Webhook{Handler: fn, RecoverPanic: new(false)}
	r := wh.Handle(context.Background(), crwebhook.Request{AdmissionRequest: req})
	if r.UID != req.UID {
		t.Fatalf("uid %q, want %q", r.UID, req.UID)
	}
	if r.Result == nil || r.Result.Code == 0 {
		t.Fatalf("response without status: %+v", r.AdmissionResponse)
	}
	if !r.Allowed && r.Result.Message == "" {
		t.Fatalf("denial without message: %+v", r.Result)
	}
	if !mutating && (len(r.Patches) > 0 || r.Patch != nil) {
		t.Fatalf("validating handler returned a patch: %+v", r.Patches)
	}
	for _, w := range r.Warnings {
		if len(w) > 120 {
			t.Fatalf("warning over 120 characters: %q", w)
		}
	}
	return r
}

// object picks the raw bytes when they look like a JSON object (random object JSON), else the typed object.
func object(raw []byte, typed any) any {
	if len(raw) > 0 && raw[0] == '{' {
		return raw
	}
	return typed
}

func FuzzValidateTenant(f *testing.F) {
	w := admissiontest.NewWorld()
	h := w.Handlers(regions())
	f.Add("initech", "Root", "", "", admissiontest.Region, "https://idp.example.com", "cmk-api", uint8(0), []byte(nil))
	f.Add("n", "Nested", "acme-eu-dr", "", "mars", "http://x", "", uint8(0), []byte(nil))
	f.Add("acme-eu", "Shadow", "", "globex", "", "", "a b", uint8(1), []byte(nil))
	f.Add("acme", "", "", "", "", "", "", uint8(2), []byte(nil))
	f.Add("x", "Nested", "x", "x", "eu-de", "https://[::1]/", "\x00", uint8(0), []byte(`{"metadata":{"name":"x","labels":{"cmk.apeiro.io/parent":"y"}},"spec":{"type":"Nested","parent":"x"}}`))
	f.Add("x", "Root", "", "", "eu-de", "", "", uint8(1), []byte(`{"spec":{"oidcProvider":{"audiences":[1]}}}`))
	f.Fuzz(func(t *testing.T, name, typ, parent, shadowOf, region, issuer, audience string, op uint8, raw []byte) {
		obj := tenant(name, hierarchy.Type(typ), parent, shadowOf)
		obj.Spec.Region = region
		if issuer != "" {
			obj.Spec.OIDCProvider = &cmkv1.OIDCProvider{Issuer: issuer, JWKSURI: issuer + "/jwks", Audiences: []string{audience}}
		}
		old := tenant(name, hierarchy.Type(parent), shadowOf, "")
		r := admissiontest.Req{Kind: "Tenant", Name: name, Op: fuzzOps[int(op)%len(fuzzOps)], Object: object(raw, obj), OldObject: old}
		serveFuzz(t, h.ValidateTenant, r.Request(), false)
		serveFuzz(t, h.MutateTenant, r.Request(), true)
	})
}

func FuzzValidateAccount(f *testing.F) {
	w := admissiontest.NewWorld()
	h := w.Handlers(admission.Handlers{Regions: regions().Regions, Keys: proberFunc(func(_ context.Context, a *cmkv1.Account) error {
		if strings.HasPrefix(a.Spec.KeyRef, "missing") {
			return admission.ErrKeyNotFound
		}
		return nil
	})})
	f.Add("acme-eu", "a", "acme-eu", "local", "lk-1", admissiontest.Region, false, uint8(0), []byte(nil))
	f.Add("acme-eu", "main", "acme-eu", "aws", "missing", "mars", true, uint8(0), []byte(nil))
	f.Add("unassigned", "a", "", "thales", "", "", false, uint8(1), []byte(nil))
	f.Add("acme-eu", "main", "globex", "openbao", "k", "", false, uint8(2), []byte(nil))
	f.Add("nope", "a", "nope", "", "", "", false, uint8(0), []byte(`{"metadata":{"labels":{"cmk.apeiro.io/tenant":"acme-eu"}},"spec":{"auth":{"secretRef":null}}}`))
	f.Fuzz(func(t *testing.T, ns, name, owner, keystore, keyRef, region string, static bool, op uint8, raw []byte) {
		a := admissiontest.AccountObject(ns, name, owner)
		a.Spec.Keystore, a.Spec.KeyRef, a.Spec.Region = cmkv1.KeystoreType(keystore), keyRef, region
		if static {
			a.Spec.Auth = &cmkv1.AccountAuth{SecretRef: &cmkv1.SecretKeySelector{Name: keyRef, Key: region}}
		}
		r := admissiontest.Req{Kind: "Account", Namespace: ns, Name: name, Op: fuzzOps[int(op)%len(fuzzOps)], Object: object(raw, a), OldObject: account(ns, name)}
		serveFuzz(t, h.ValidateAccount, r.Request(), false)
		checkMutation(t, h.MutateAccount, r, raw)
	})
}

func FuzzValidateServiceEncryptionKey(f *testing.F) {
	w := admissiontest.NewWorld()
	h := w.Handlers(admission.Handlers{})
	f.Add("acme-eu-payments", "k", "acme-eu", "main", "AES256", "spiffe://cluster.local/ns/a/sa/b", uint8(0), []byte(nil))
	f.Add("acme-eu", "k", "globex", "main", "RSA3072", "spiffe://x/../y", uint8(0), []byte(nil))
	f.Add("acme-eu-dr", "k", "", "main", "", "", uint8(1), []byte(nil))
	f.Add("unassigned", "k", "acme", "main", "", "spiffe://", uint8(0), []byte(nil))
	f.Add("acme-eu", "k1", "acme-eu", "main", "AES256", "", uint8(2), []byte(nil))
	f.Add("acme-eu", "k", "", "", "", "", uint8(0), []byte(`{"metadata":{"labels":{"cmk.apeiro.io/tenant":"acme-eu"}},"spec":{"accountRef":null}}`))
	f.Fuzz(func(t *testing.T, ns, name, accNS, acc, alg, identity string, op uint8, raw []byte) {
		k := key(ns, name, accNS, acc)
		k.Spec.Algorithm = cmkv1.KeyAlgorithm(alg)
		if identity != "" {
			k.Spec.WorkloadIdentities = []string{identity}
		}
		r := admissiontest.Req{Kind: "ServiceEncryptionKey", Namespace: ns, Name: name, Op: fuzzOps[int(op)%len(fuzzOps)], Object: object(raw, k), OldObject: key(ns, name, "", acc)}
		serveFuzz(t, h.ValidateServiceEncryptionKey, r.Request(), false)
		checkMutation(t, h.MutateServiceEncryptionKey, r, raw)
	})
}

func FuzzValidateWebHookNotification(f *testing.F) {
	w := admissiontest.NewWorld()
	h := w.Handlers(admission.Handlers{})
	for _, u := range []string{"https://hooks.example.com/x", "http://x.example.com", "https://10.0.0.1/", "https://169.254.169.254/",
		"https://localhost/", "https://[fe80::1%25eth0]/", "https://0x7f.1/", "https://a.svc/", "https://hooks.example.com:99999/", "https:///x"} {
		f.Add("acme-eu", "h", u, true, uint8(0), []byte(nil))
	}
	f.Add("acme-eu", "h", "https://hooks.example.com/x", false, uint8(1), []byte(nil))
	f.Add("acme-eu", "h", "", false, uint8(0), []byte(`{"metadata":{"labels":{"cmk.apeiro.io/tenant":"acme-eu"}},"spec":{"url":7}}`))
	f.Fuzz(func(t *testing.T, ns, name, url string, signed bool, op uint8, raw []byte) {
		obj := admissiontest.NotificationObject(ns, name, url, signed)
		r := admissiontest.Req{Kind: "WebHookNotification", Namespace: ns, Name: name, Op: fuzzOps[int(op)%len(fuzzOps)], Object: object(raw, obj)}
		resp := serveFuzz(t, h.ValidateWebHookNotification, r.Request(), false)
		// Whatever the parser makes of it, a non-https URL or a loopback / private / link-local literal never passes.
		if o := r.Request().Operation; resp.Allowed && len(raw) == 0 && (o == admissionv1.Create || o == admissionv1.Update) {
			u, err := neturl.Parse(url)
			if err != nil {
				t.Fatalf("unparsable URL %q was allowed", url)
			}
			if u.Scheme != "https" {
				t.Fatalf("URL %q with scheme %q was allowed", url, u.Scheme)
			}
			if ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil && (ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified()) {
				t.Fatalf("URL %q to a non-public address was allowed", url)
			}
		}
		checkMutation(t, h.MutateWebHookNotification, r, raw)
	})
}

// spiffeRef is an independent statement of the SPIFFE ID rules checkSPIFFEID implements.
var spiffeRef = regexp.MustCompile(`^spiffe://[a-z0-9._-]+(/[A-Za-z0-9._-]+)+$`)

func spiffeValid(id string) bool {
	if len(id) > 2048 || !spiffeRef.MatchString(id) {
		return false
	}
	_, path, _ := strings.Cut(strings.TrimPrefix(id, "spiffe://"), "/")
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// FuzzSPIFFEID checks the workload identity rule of ServiceEncryptionKeys against an independent reference.
func FuzzSPIFFEID(f *testing.F) {
	w := admissiontest.NewWorld()
	h := w.Handlers(admission.Handlers{})
	for _, id := range []string{"spiffe://cluster.local/ns/a/sa/b", "spiffe://a/.", "spiffe://a/..", "spiffe://a/...", "spiffe://A/b",
		"spiffe://a", "spiffe://a/", "spiffe:///b", "spiffe://a/b/", "spiffe://a:1/b", "SPIFFE://a/b", "spiffe://a/b%20c", "spiffe://ä/b"} {
		f.Add(id)
	}
	f.Fuzz(func(t *testing.T, id string) {
		k := key(admissiontest.AcmeEU, "k", "", "main")
		k.Spec.WorkloadIdentities = []string{id}
		r := admissiontest.Req{Kind: "ServiceEncryptionKey", Namespace: admissiontest.AcmeEU, Name: "k", Object: k}
		resp := serveFuzz(t, h.ValidateServiceEncryptionKey, r.Request(), false)
		if want := spiffeValid(id); resp.Allowed != want {
			t.Fatalf("SPIFFE ID %q: allowed=%v, reference says %v (%s)", id, resp.Allowed, want, resp.Result.Message)
		}
		if !resp.Allowed && !strings.Contains(resp.Result.Message, "spec.workloadIdentities[0]") {
			t.Fatalf("denial does not name the field: %s", resp.Result.Message)
		}
	})
}

// checkMutation runs the mutating handler on the same request and, for objects built from typed fields (what an API
// server sends), checks the patch applies and leaves the ownership label in place.
func checkMutation(t *testing.T, fn crwebhook.HandlerFunc, r admissiontest.Req, raw []byte) {
	t.Helper()
	req := r.Request()
	resp := serveFuzz(t, fn, req, true)
	if !resp.Allowed || len(resp.Patches) == 0 {
		return
	}
	if len(raw) > 0 && raw[0] == '{' {
		return // arbitrary JSON may lack metadata, which the API server always sends
	}
	ops, err := json.Marshal(resp.Patches)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		t.Fatalf("patch %s: %v", ops, err)
	}
	out, err := p.Apply(req.Object.Raw)
	if err != nil {
		t.Fatalf("patch %s does not apply to %s: %v", ops, req.Object.Raw, err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("patched object is not JSON: %v", err)
	}
	if _, ok := labelsOf(m)[cmkv1.TenantLabel]; !ok {
		t.Fatalf("patched object has no ownership label: %s", out)
	}
}
