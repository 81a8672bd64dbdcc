package admission

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Paths of the admission endpoints (kubebuilder naming: <verb>-<group with dashes>-<version>-<kind>).
const (
	PathMutateTenant                = "/mutate-cmk-apeiro-io-v1alpha1-tenant"
	PathValidateTenant              = "/validate-cmk-apeiro-io-v1alpha1-tenant"
	PathMutateAccount               = "/mutate-cmk-apeiro-io-v1alpha1-account"
	PathValidateAccount             = "/validate-cmk-apeiro-io-v1alpha1-account"
	PathMutateServiceEncryptionKey  = "/mutate-cmk-apeiro-io-v1alpha1-serviceencryptionkey"
	PathValidateServiceEncryption   = "/validate-cmk-apeiro-io-v1alpha1-serviceencryptionkey"
	PathMutateWebHookNotification   = "/mutate-cmk-apeiro-io-v1alpha1-webhooknotification"
	PathValidateWebHookNotification = "/validate-cmk-apeiro-io-v1alpha1-webhooknotification"
	PathValidateOpenKCMTenant       = "/validate-operations-openkcm-io-v1alpha1-tenant"
)

// Endpoints maps each path to its handler.
func (h *Handlers) Endpoints() map[string]admission.HandlerFunc {
	return map[string]admission.HandlerFunc{
		PathMutateTenant:                h.MutateTenant,
		PathValidateTenant:              h.ValidateTenant,
		PathMutateAccount:               h.MutateAccount,
		PathValidateAccount:             h.ValidateAccount,
		PathMutateServiceEncryptionKey:  h.MutateServiceEncryptionKey,
		PathValidateServiceEncryption:   h.ValidateServiceEncryptionKey,
		PathMutateWebHookNotification:   h.MutateWebHookNotification,
		PathValidateWebHookNotification: h.ValidateWebHookNotification,
		PathValidateOpenKCMTenant:       h.ValidateOpenKCMTenant,
	}
}

// Registrar is the part of controller-runtime's webhook.Server used here.
type Registrar interface {
	Register(path string, hook http.Handler)
}

// Limits bound every request before it reaches a handler.
type Limits struct {
	// MaxBodyBytes caps the AdmissionReview body (default 3 MiB: the API server's 1.5 MiB object limit, twice for
	// UPDATE's old object, plus envelope). controller-runtime's own 7 MiB cap stays behind it.
	MaxBodyBytes int64
	// RequestTimeout bounds reading the body and answering (default 10 s, above the 5 s webhook timeout).
	RequestTimeout time.Duration
}

const (
	DefaultMaxBodyBytes   = 3 << 20
	DefaultRequestTimeout = 10 * time.Second
)

// Register registers every endpoint on srv: each handler is wrapped in metrics, panic recovery (the response still
// carries the request UID) and the request limits.
func Register(srv Registrar, h *Handlers, lim Limits) {
	if lim.MaxBodyBytes <= 0 {
		lim.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if lim.RequestTimeout <= 0 {
		lim.RequestTimeout = DefaultRequestTimeout
	}
	for path, fn := range h.Endpoints() {
		wh := &admission.Webhook{Handler: instrument(path, fn), RecoverPanic: new(true)}
		srv.Register(path, limit(lim, wh))
	}
}

// limit caps the body and sets read/write deadlines on the connection for this request.
func limit(lim Limits, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "only POST is allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.ContentLength > lim.MaxBodyBytes {
			requestsRejected.WithLabelValues("too_large").Inc()
			http.Error(w, "request entity is too large; limit is "+strconv.FormatInt(lim.MaxBodyBytes, 10)+" bytes", http.StatusRequestEntityTooLarge)
			return
		}
		rc := http.NewResponseController(w)
		deadline := time.Now().Add(lim.RequestTimeout)
		_ = rc.SetReadDeadline(deadline) // not every ResponseWriter supports deadlines (httptest); the server's own timeouts remain
		_ = rc.SetWriteDeadline(deadline)
		// Read the body here rather than handing controller-runtime a MaxBytesReader: a chunked body over the limit
		// would otherwise surface as a read error (answered 400, not counted) instead of 413, and a wrapped empty
		// body would no longer be http.NoBody, so controller-runtime's "request body is empty" check was skipped
		// and an empty AdmissionRequest reached the handlers.
		if r.Body != nil && r.Body != http.NoBody {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, lim.MaxBodyBytes))
			var tooLarge *http.MaxBytesError
			switch {
			case errors.As(err, &tooLarge):
				requestsRejected.WithLabelValues("too_large").Inc()
				http.Error(w, "request entity is too large; limit is "+strconv.FormatInt(lim.MaxBodyBytes, 10)+" bytes", http.StatusRequestEntityTooLarge)
				return
			case err != nil:
				http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
				return
			case len(body) == 0:
				r.Body = http.NoBody
			default:
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
		}
		// controller-runtime writes the AdmissionReview without a Content-Type, so net/http would sniff text/plain.
		w.Header().Set("Content-Type", "application/json")
		next.ServeHTTP(w, r)
	})
}

var (
	// Buckets fine enough to read a p99 below 10 ms (controller-runtime's defaults step by a factor of ten).
	latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "apeiro_cmk_admission_duration_seconds",
		Help:    "Time to answer an admission request, by endpoint, operation and verdict.",
		Buckets: latencyBuckets,
	}, []string{"webhook", "operation", "verdict", "dry_run"})

	requestsRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apeiro_cmk_admission_rejected_requests_total",
		Help: "Requests refused before reaching a handler, by reason.",
	}, []string{"reason"})
)

func init() {
	metrics.Registry.MustRegister(requestDuration, requestsRejected)
}

// instrument records latency and verdict. Labels are bounded: endpoint, operation, verdict — never tenant or object
// names.
func instrument(path string, fn admission.HandlerFunc) admission.HandlerFunc {
	return func(ctx context.Context, req admission.Request) admission.Response {
		start := time.Now()
		resp := fn(ctx, req)
		verdict := "allowed"
		switch {
		case resp.Result != nil && resp.Result.Code >= 400 && resp.Result.Code != http.StatusForbidden:
			verdict = "errored"
		case !resp.Allowed:
			verdict = "denied"
		case len(resp.Patches) > 0:
			verdict = "patched"
		}
		dry := "false"
		if req.DryRun != nil && *req.DryRun {
			dry = "true"
		}
		requestDuration.WithLabelValues(path, string(req.Operation), verdict, dry).Observe(time.Since(start).Seconds())
		return resp
	}
}
