package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/apeirora/apeiro-cmk/pkg/server"
)

// reviewHandler serves one admission endpoint: it decodes the AdmissionReview, runs the handler and writes the answer
// in the request's AdmissionReview version. It replaces controller-runtime's admission.Webhook on this path, which
// under load cost more than our checks: it copied the body once more, scanned it twice (a GVK sniff, then a full
// decode through the universal deserializer), built a structured logger with six values for every request, and
// wrote the answer through a fresh json.Encoder without a Content-Length. Here the body comes from server.Limiter
// without a copy, is decoded once, the answer is encoded into a pooled buffer and written in one call, and nothing is
// logged per request. Behaviour is the same: v1 and v1beta1, "request body is empty", the Content-Type check, the
// response UID, a recovered panic answered 500 with the UID, and Response.Complete for patches.
type reviewHandler struct {
	handler admission.HandlerFunc
	metrics *endpointMetrics
}

const (
	reviewV1      = "admission.k8s.io/v1"
	reviewV1beta1 = "admission.k8s.io/v1beta1"
	reviewKind    = "AdmissionReview"
)

var answers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (h *reviewHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, ok := server.RequestBody(r)
	if !ok && r.Body != nil && r.Body != http.NoBody {
		// Not behind a server.Limiter (a test mux): read with controller-runtime's own 7 MiB cap.
		b, err := io.ReadAll(io.LimitReader(r.Body, 7<<20))
		if err != nil {
			h.write(w, reviewV1, erroredResponse(http.StatusBadRequest, "reading the request body: %v", err))
			return
		}
		body = b
	}
	if len(body) == 0 {
		h.write(w, reviewV1, erroredResponse(http.StatusBadRequest, "request body is empty"))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		h.write(w, reviewV1, erroredResponse(http.StatusBadRequest, "contentType=%s, expected application/json", ct))
		return
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &ar); err != nil {
		// The decoder's message names a type or an offset, never the payload.
		h.write(w, reviewV1, erroredResponse(http.StatusBadRequest, "the body is not an AdmissionReview: %v", err))
		return
	}
	version := ar.APIVersion
	switch {
	case version == "" && ar.Kind == "":
		version = reviewV1 // an envelope without type information is read as v1, as controller-runtime does
	case ar.Kind != reviewKind || (version != reviewV1 && version != reviewV1beta1):
		h.write(w, reviewV1, erroredResponse(http.StatusBadRequest, "expected an AdmissionReview of %s or %s, got kind %q of %q",
			reviewV1, reviewV1beta1, truncate(ar.Kind), truncate(version)))
		return
	}
	if ar.Request == nil {
		h.write(w, version, erroredResponse(http.StatusBadRequest, "the AdmissionReview has no request"))
		return
	}
	req := admission.Request{AdmissionRequest: *ar.Request}
	// Live reads that started after this moment are fresh for this request (BatchedReader).
	resp := h.handle(WithArrival(r.Context(), start), req)
	h.write(w, version, resp)
	h.metrics.observe(req, resp, start)
}

// handle runs the handler, turning a panic into an errored answer that still carries the request UID.
func (h *reviewHandler) handle(ctx context.Context, req admission.Request) (resp admission.Response) {
	defer func() {
		if p := recover(); p != nil {
			for _, fn := range utilruntime.PanicHandlers { // logs the panic with its stack
				fn(ctx, p)
			}
			panicsRecovered.Inc()
			resp = admission.Errored(http.StatusInternalServerError, fmt.Errorf("panic: %v [recovered]", p))
			resp.UID = req.UID
		}
	}()
	resp = h.handler(ctx, req)
	if err := resp.Complete(req); err != nil {
		resp = admission.Errored(http.StatusInternalServerError, fmt.Errorf("encoding the response patch: %w", err))
		resp.UID = req.UID
	}
	return resp
}

func erroredResponse(code int32, format string, args ...any) admission.Response {
	r := errored(code, format, args...)
	_ = r.Complete(admission.Request{}) // fills in the status code; no UID: the request was never read
	return r
}

// write encodes the answer into a pooled buffer and sends it with its length in one write.
func (h *reviewHandler) write(w http.ResponseWriter, version string, resp admission.Response) {
	out := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: version, Kind: reviewKind},
		Response: &resp.AdmissionResponse,
	}
	buf := answers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 {
			buf.Reset()
			answers.Put(buf)
		}
	}()
	if err := json.NewEncoder(buf).Encode(out); err != nil {
		// Every field is a plain value; this cannot fail short of a bug. Answer without the details.
		buf.Reset()
		fallback := erroredResponse(http.StatusInternalServerError, "encoding the response failed")
		fallback.UID = resp.UID
		_ = json.NewEncoder(buf).Encode(admissionv1.AdmissionReview{TypeMeta: out.TypeMeta, Response: &fallback.AdmissionResponse})
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(buf.Len()))
	_, _ = w.Write(buf.Bytes())
}
