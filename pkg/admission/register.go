package admission

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/sync/semaphore"
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
	PathValidateNamespace           = "/validate-core-v1-namespace"
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
		PathValidateNamespace:           h.ValidateNamespace,
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
	// MaxInFlightBytes caps the bodies held by all requests being answered at once (default 16 MiB). A request
	// reserves its Content-Length (MaxBodyBytes while the length is unknown) before its body is read and keeps it
	// until it is answered; one that cannot reserve within InFlightWait is answered 429, so a burst of large
	// bodies costs latency, never the replica's memory limit.
	MaxInFlightBytes int64
	// InFlightWait is how long a request waits for room in MaxInFlightBytes (default 1 s).
	InFlightWait time.Duration
}

const (
	DefaultMaxBodyBytes   = 3 << 20
	DefaultRequestTimeout = 10 * time.Second
	DefaultMaxInFlight    = 16 << 20
	DefaultInFlightWait   = time.Second
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
	if lim.MaxInFlightBytes <= 0 {
		lim.MaxInFlightBytes = DefaultMaxInFlight
	}
	if lim.MaxInFlightBytes < lim.MaxBodyBytes {
		lim.MaxInFlightBytes = lim.MaxBodyBytes // one maximal request must always fit
	}
	if lim.InFlightWait <= 0 {
		lim.InFlightWait = DefaultInFlightWait
	}
	budget := semaphore.NewWeighted(lim.MaxInFlightBytes) // shared by every endpoint
	for path, fn := range h.Endpoints() {
		wh := &admission.Webhook{Handler: instrument(path, h.scoped(fn)), RecoverPanic: new(true)}
		srv.Register(path, limit(lim, budget, wh))
	}
}

// limit caps the body and sets read/write deadlines on the connection for this request.
func limit(lim Limits, budget *semaphore.Weighted, next http.Handler) http.Handler {
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
		reserved := lim.MaxBodyBytes
		if r.ContentLength >= 0 && r.ContentLength < reserved {
			reserved = r.ContentLength
		}
		reserved = max(reserved, 1)
		wctx, cancel := context.WithTimeout(r.Context(), lim.InFlightWait)
		err := budget.Acquire(wctx, reserved)
		cancel()
		if err != nil {
			requestsRejected.WithLabelValues("busy").Inc()
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many large requests in flight; retry", http.StatusTooManyRequests)
			return
		}
		defer func() { budget.Release(reserved) }()
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
			// A body of unknown length reserved the maximum; keep only what it really holds.
			if n := max(int64(len(body)), 1); n < reserved {
				budget.Release(reserved - n)
				reserved = n
			}
		}
		// controller-runtime writes the AdmissionReview without a Content-Type, so net/http would sniff text/plain.
		w.Header().Set("Content-Type", "application/json")
		next.ServeHTTP(w, r)
	})
}
