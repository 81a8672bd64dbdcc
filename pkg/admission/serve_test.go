package admission_test

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/admissiontest"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// TestReviewHandlerEnvelope covers what the review handler itself decides, beyond TestReviewEnvelope: the type of
// the envelope, an envelope without type information, and the framing of every answer.
func TestReviewHandlerEnvelope(t *testing.T) {
	w := admissiontest.NewWorld()
	mux := admissiontest.Mux(w.Handlers(admission.Handlers{}), admission.Limits{})
	good := admissiontest.Req{Kind: "Tenant", Name: "initech", Object: tenant("initech", hierarchy.Root, "", "")}.Body()
	retype := func(from, to string) []byte { return bytes.Replace(good, []byte(from), []byte(to), 1) }
	cases := []struct {
		name    string
		body    []byte
		code    int32 // AdmissionResponse code
		version string
		msg     string
	}{
		{"v1", good, 200, "admission.k8s.io/v1", ""},
		{"no apiVersion and kind: read as v1", retype(`"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1",`, ""), 200, "admission.k8s.io/v1", ""},
		{"another kind", retype(`"kind":"AdmissionReview"`, `"kind":"TokenReview"`), 400, "admission.k8s.io/v1", `kind "TokenReview"`},
		{"another group", retype(`"apiVersion":"admission.k8s.io/v1"`, `"apiVersion":"authentication.k8s.io/v1"`), 400, "admission.k8s.io/v1", "authentication.k8s.io/v1"},
		{"a string where the request belongs", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":"x"}`), 400, "admission.k8s.io/v1", "not an AdmissionReview"},
	}
	if !bytes.Contains(good, []byte(`"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1",`)) {
		t.Fatalf("fixture changed: %s", good[:80])
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := admissiontest.Post(mux, admission.PathValidateTenant, tc.body)
			if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" ||
				rec.Header().Get("Content-Length") != strconv.Itoa(rec.Body.Len()) {
				t.Fatalf("HTTP %d, headers %v", rec.Code, rec.Header())
			}
			ar, err := admissiontest.Decode(rec.Body)
			if err != nil {
				t.Fatal(err)
			}
			if ar.APIVersion != tc.version || ar.Kind != "AdmissionReview" || ar.Response.Result == nil || ar.Response.Result.Code != tc.code {
				t.Fatalf("answer %s/%s %+v", ar.APIVersion, ar.Kind, ar.Response.Result)
			}
			if !strings.Contains(ar.Response.Result.Message, tc.msg) {
				t.Errorf("message %q does not contain %q", ar.Response.Result.Message, tc.msg)
			}
		})
	}
}

// The latency histogram's labels stay bounded whatever a client sends as the operation.
func TestReviewHandlerMetricLabelsBounded(t *testing.T) {
	w := admissiontest.NewWorld()
	mux := admissiontest.Mux(w.Handlers(admission.Handlers{}), admission.Limits{})
	body := admissiontest.Req{Kind: "Tenant", Name: "x", Op: "HOSTILE-OPERATION-0001", Object: tenant("x", hierarchy.Root, "", "")}.Body()
	if rec := admissiontest.Post(mux, admission.PathValidateTenant, body); rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d", rec.Code)
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	other := false
	for _, f := range families {
		if f.GetName() != "apeiro_cmk_admission_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "operation" {
					if strings.Contains(l.GetValue(), "HOSTILE") {
						t.Fatalf("client-chosen label value %q", l.GetValue())
					}
					other = other || l.GetValue() == "other"
				}
			}
		}
	}
	if !other {
		t.Fatal(`the request was not counted under operation="other"`)
	}
}
