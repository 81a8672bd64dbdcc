package admission_test

// Handler benchmarks. Run:
//
//	go test -run '^$' -bench . -benchtime=2000x ./pkg/admission/
//
// Handler* call the handler function directly with a prepared admission.Request (our checks only). HTTP* POST a
// JSON AdmissionReview through an in-process http.ServeMux and httptest recorder: HTTPRegister* through the chain
// admission.Register builds (limits, controller-runtime webhook, metrics, our handler), HTTPBaselineAllowed through
// a bare controller-runtime admission.Webhook whose handler returns Allowed, with the same body — the difference is
// what our limits, metrics and checks cost on top of the framework's decode/encode.
//
// Namespaces are read from a map-backed reader that copies like an informer cache (admissiontest.NamespaceReader),
// not from the fake client, whose JSON round trip would dominate.

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	corev1 "k8s.io/api/core/v1"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/admissiontest"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// smallHandlers is the admissiontest world with namespaces from a NamespaceReader.
func smallHandlers(opts admission.Handlers) *admission.Handlers {
	w := admissiontest.NewWorld()
	var nss []*corev1.Namespace
	for _, t := range admissiontest.Tenants {
		nss = append(nss, admissiontest.NamespaceObject(t.ID, t.ID))
	}
	w.Dir.Cached = admissiontest.NewNamespaceReader(nss...)
	return w.Handlers(opts)
}

// Large world: 1,000 roots r-<i>, each with 9 children r-<i>-<j> (1 ≤ j ≤ 9) and 90 grandchildren r-<i>-<j> (j ≥ 10,
// parent r-<i>-<1 + j mod 9>): 100,000 tenants, one Account "main" each. The benchmarked key is owned by grandchild
// r-500-50 and uses its root's Account r-500/main, so the allowed path walks two levels up.
const (
	bigRoots    = 1000
	bigPerRoot  = 100
	bigKeyOwner = "r-500-50"
	bigAccount  = "r-500"
)

func bigHandlers(b *testing.B) *admission.Handlers {
	b.Helper()
	m := hierarchy.New(hierarchy.Config{})
	for i := range bigRoots {
		root := fmt.Sprintf("r-%d", i)
		m.UpsertTenant(hierarchy.Tenant{ID: root, Type: hierarchy.Root})
		m.UpsertAccount(hierarchy.AccountKey{Namespace: root, Name: "main"}, root)
		for j := 1; j < bigPerRoot; j++ {
			id, parent := fmt.Sprintf("r-%d-%d", i, j), root
			if j >= 10 {
				parent = fmt.Sprintf("r-%d-%d", i, 1+j%9)
			}
			m.UpsertTenant(hierarchy.Tenant{ID: id, Type: hierarchy.Nested, Parent: parent})
			m.UpsertAccount(hierarchy.AccountKey{Namespace: id, Name: "main"}, id)
		}
	}
	if m.Len() != bigRoots*bigPerRoot {
		b.Fatalf("model has %d tenants", m.Len())
	}
	dir := &admission.Directory{
		Model:  m,
		Cached: admissiontest.NewNamespaceReader(admissiontest.NamespaceObject(bigKeyOwner, bigKeyOwner), admissiontest.NamespaceObject(bigAccount, bigAccount)),
	}
	return admission.NewHandlers(admission.Handlers{Dir: dir})
}

func bigKeyReq() admissiontest.Req {
	return keyReq("", key(bigKeyOwner, "k-new", bigAccount, "main"), nil)
}

func benchHandler(b *testing.B, fn crwebhook.HandlerFunc, r admissiontest.Req, allowed, patched bool) {
	b.Helper()
	req := crwebhook.Request{AdmissionRequest: r.Request()}
	ctx := context.Background()
	if resp := fn(ctx, req); resp.Allowed != allowed || (len(resp.Patches) > 0) != patched {
		b.Fatalf("unexpected answer: allowed=%v patches=%v status=%+v", resp.Allowed, resp.Patches, resp.Result)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_ = fn(ctx, req)
	}
}

func BenchmarkHandlerTenantCreate(b *testing.B) {
	h := smallHandlers(admission.Handlers{})
	benchHandler(b, h.ValidateTenant, tenantReq("", tenant("acme-eu-new", hierarchy.Nested, admissiontest.AcmeEU, ""), nil), true, false)
}

func BenchmarkHandlerAccountCreate(b *testing.B) {
	h := smallHandlers(admission.Handlers{})
	benchHandler(b, h.ValidateAccount, accountReq("", account(admissiontest.AcmeEU, "second"), nil), true, false)
}

func BenchmarkHandlerServiceEncryptionKeyCreate100k(b *testing.B) {
	h := bigHandlers(b)
	benchHandler(b, h.ValidateServiceEncryptionKey, bigKeyReq(), true, false)
}

func BenchmarkHandlerServiceEncryptionKeyCreate100kDenied(b *testing.B) {
	h := bigHandlers(b)
	benchHandler(b, h.ValidateServiceEncryptionKey, keyReq("", key(bigKeyOwner, "k-new", "r-501", "main"), nil), false, false)
}

func BenchmarkHandlerWebHookNotification(b *testing.B) {
	h := smallHandlers(admission.Handlers{})
	benchHandler(b, h.ValidateWebHookNotification,
		hookReq(admissiontest.NotificationObject(admissiontest.AcmeEU, "alerts", "https://hooks.example.com/cmk", true)), true, false)
}

func BenchmarkHandlerServiceEncryptionKeyMutate(b *testing.B) {
	h := smallHandlers(admission.Handlers{})
	benchHandler(b, h.MutateServiceEncryptionKey, keyReq("", unlabelled(key(admissiontest.AcmeEU, "k-new", "", "main")), nil), true, true)
}

func benchHTTP(b *testing.B, h http.Handler, path string, body []byte) {
	b.Helper()
	if rec := admissiontest.Post(h, path, body); rec.Code != http.StatusOK {
		b.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	} else if ar, err := admissiontest.Decode(rec.Body); err != nil || !ar.Response.Allowed {
		b.Fatalf("not allowed: %v %+v", err, ar)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_ = admissiontest.Post(h, path, body)
	}
}

func BenchmarkHTTPRegisterServiceEncryptionKey100k(b *testing.B) {
	mux := http.NewServeMux()
	admission.Register(admissiontest.MuxRegistrar{ServeMux: mux}, bigHandlers(b), admission.Limits{})
	benchHTTP(b, mux, admission.PathValidateServiceEncryption, bigKeyReq().Body())
}

func BenchmarkHTTPBaselineAllowed(b *testing.B) {
	mux := http.NewServeMux()
	mux.Handle(admission.PathValidateServiceEncryption, &crwebhook.Webhook{
		Handler: crwebhook.HandlerFunc(func(context.Context, crwebhook.Request) crwebhook.Response { return crwebhook.Allowed("") }),
	})
	benchHTTP(b, mux, admission.PathValidateServiceEncryption, bigKeyReq().Body())
}
