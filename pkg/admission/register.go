package admission

import (
	"net/http"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/apeirora/apeiro-cmk/pkg/server"
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

// Limits bound every request before it reaches a handler; see server.Limits (the limits are the HTTP server's
// concern and live in pkg/server; the names here are kept for callers).
type Limits = server.Limits

const (
	DefaultMaxBodyBytes   = server.DefaultMaxBodyBytes
	DefaultRequestTimeout = server.DefaultRequestTimeout
	DefaultMaxInFlight    = server.DefaultMaxInFlight
	DefaultInFlightWait   = server.DefaultInFlightWait
)

// Register registers every endpoint on srv: each handler is served by reviewHandler (decode, panic recovery that
// keeps the request UID, encode, latency metrics) behind the request limits, with one in-flight budget shared by
// every endpoint.
func Register(srv Registrar, h *Handlers, lim Limits) {
	limiter := server.NewLimiter(lim)
	for path, fn := range h.Endpoints() {
		srv.Register(path, limiter.Wrap(&reviewHandler{handler: h.scoped(fn), metrics: newEndpointMetrics(path)}))
	}
}
