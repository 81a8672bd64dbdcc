package admission

import (
	"fmt"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// FieldError is one rejected field as a denial renders it. Rule is a stable rule identifier (docs/hierarchy.md,
// docs/admission.md). Handlers build field.Errors (fielderr.go); denyErrs turns them into these.
type FieldError struct {
	Field string
	Rule  string
	Msg   string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Msg }

// deny turns field errors into a denial the API server shows as
// `admission webhook "<name>" denied the request: <kind> "<name>": <field>: <msg>; ...`.
// The causes carry each field separately so clients can render them.
func deny(kind, name string, errs ...FieldError) admission.Response {
	msgs := make([]string, 0, len(errs))
	causes := make([]metav1.StatusCause, 0, len(errs))
	for _, e := range errs {
		msgs = append(msgs, e.Error())
		causes = append(causes, metav1.StatusCause{
			Type:    metav1.CauseType("FieldValue" + ruleSuffix(e.Rule)),
			Field:   e.Field,
			Message: e.Msg,
		})
	}
	return admission.Response{AdmissionResponse: admissionResponseDenied(
		fmt.Sprintf("%s %q: %s", kind, name, strings.Join(msgs, "; ")), causes)}
}

func ruleSuffix(rule string) string {
	if rule == "" {
		return "Invalid"
	}
	return "Invalid:" + rule
}

// errored answers a request the handler could not judge (undecodable object, backend failure). The API server
// applies the webhook's failurePolicy to it.
func errored(code int32, format string, args ...any) admission.Response {
	return admission.Errored(code, fmt.Errorf(format, args...))
}

func badRequest(format string, args ...any) admission.Response {
	return errored(http.StatusBadRequest, format, args...)
}

// allowed answers yes, with optional warnings (each kept under the API server's 120 character guidance).
func allowed(warnings ...string) admission.Response {
	r := admission.Allowed("")
	for _, w := range warnings {
		if len(w) > 120 {
			w = w[:117] + "..."
		}
		r.Warnings = append(r.Warnings, w)
	}
	return r
}

func admissionResponseDenied(msg string, causes []metav1.StatusCause) admissionv1.AdmissionResponse {
	return admissionv1.AdmissionResponse{
		Allowed: false,
		Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusForbidden,
			Reason:  metav1.StatusReasonForbidden,
			Message: msg,
			Details: &metav1.StatusDetails{Causes: causes},
		},
	}
}
