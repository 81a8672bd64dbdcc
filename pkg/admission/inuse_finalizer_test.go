package admission

import (
	"context"
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// The mutating webhook stamps the in-use finalizer on Tenants at create only, next to finalizers the writer set,
// and never when the option is off.
func TestMutateTenantInUseFinalizer(t *testing.T) {
	const fin = "cmk.apeiro.io/in-use"
	cases := []struct {
		name       string
		option     string
		op         admissionv1.Operation
		finalizers []string
		wantPath   string // the finalizer operation's path; "" for none
	}{
		{name: "create without finalizers", option: fin, op: admissionv1.Create, wantPath: "/metadata/finalizers"},
		{name: "create next to another finalizer", option: fin, op: admissionv1.Create, finalizers: []string{"x.io/y"}, wantPath: "/metadata/finalizers/-"},
		{name: "create already carrying it", option: fin, op: admissionv1.Create, finalizers: []string{fin}},
		{name: "update is left to the controller", option: fin, op: admissionv1.Update},
		{name: "option off", op: admissionv1.Create},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHandlers(Handlers{Dir: &Directory{Model: hierarchy.New(hierarchy.Config{})}, InUseFinalizer: tc.option})
			obj := &cmkv1.Tenant{Spec: cmkv1.TenantSpec{Type: cmkv1.TenantTypeRoot, Region: "eu"}}
			obj.Name, obj.Finalizers = "acme", tc.finalizers
			obj.Labels = map[string]string{cmkv1.TenantLabel: "acme"}
			raw, _ := json.Marshal(obj)
			req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
				Operation: tc.op, Name: "acme", Object: runtime.RawExtension{Raw: raw},
			}}
			req.Kind.Group, req.Kind.Kind = cmkv1.GroupVersion.Group, "Tenant"
			resp := h.MutateTenant(context.Background(), req)
			if !resp.Allowed {
				t.Fatalf("denied: %v", resp.Result)
			}
			var got string
			for _, p := range resp.Patches {
				if p.Path == "/metadata/finalizers" || p.Path == "/metadata/finalizers/-" {
					got = p.Path
				}
			}
			if got != tc.wantPath {
				t.Fatalf("finalizer patch path %q, want %q (patches %v)", got, tc.wantPath, resp.Patches)
			}
		})
	}
}
