package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// WorkloadKeyPath is the route of the workload key endpoint: POST /v1/workload-keys/{namespace}/{name}/{unwrap|encrypt|decrypt}.
const WorkloadKeyPath = "/v1/workload-keys/"

// ErrNoSuchKey is returned by a KeyLookup for a key that does not exist.
var ErrNoSuchKey = errors.New("no such key")

// KeyGrant is what the endpoint needs to know about a ServiceEncryptionKey to decide: its owning tenant (the
// tenant of its namespace) and the SPIFFE IDs in spec.workloadIdentities.
type KeyGrant struct {
	Namespace, Name    string
	Tenant             string
	WorkloadIdentities []string
}

// KeyLookup finds a ServiceEncryptionKey's grant; ErrNoSuchKey when it does not exist.
type KeyLookup interface {
	Lookup(ctx context.Context, namespace, name string) (*KeyGrant, error)
}

// KeyService releases or uses a ServiceEncryptionKey for a caller already authorised for it; *keychain.Chain
// implements it. Errors wrap the keychain sentinels (keychain.ErrServiceKeyNotReady, keychain.ErrUnavailable, ...).
type KeyService interface {
	UnwrapServiceKey(ctx context.Context, namespace, name string) ([]byte, error)
	Encrypt(ctx context.Context, namespace, name string, plaintext, aad []byte) ([]byte, error)
	Decrypt(ctx context.Context, namespace, name string, ciphertext, aad []byte) ([]byte, error)
}

// WorkloadKeyHandler lets a workload use a ServiceEncryptionKey it is listed for: receive the unwrapped key, or
// have data encrypted / decrypted with it. The caller authenticates with its X.509-SVID (mTLS) or a JWT-SVID bearer
// token. Access needs both: the SPIFFE ID is listed in the key's spec.workloadIdentities, and the ID's tenant
// (pkg/tenantid scheme) is the key's tenant, so a listing written by mistake (or naming another tenant's workload)
// never hands a key across tenants. Every decision is logged with the SPIFFE ID and the key; key material and
// payloads never are.
type WorkloadKeyHandler struct {
	SPIFFE *SPIFFEVerifier
	// Components, if set, also accepts client certificates of CMK components from the certificate issuer
	// (pkg/mtls; componentcerts.go). Nil: X.509-SVIDs only.
	Components ComponentVerifier
	Keys       KeyLookup
	Service    KeyService
	Log        *slog.Logger
	Timeout    time.Duration
}

// MaxWorkloadPayload bounds the body of an encrypt/decrypt request (base64 JSON of at most 1 MiB of data).
const MaxWorkloadPayload = 2 << 20

// WorkloadKeyResponse is the JSON answer of unwrap.
type WorkloadKeyResponse struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Key is the plaintext key, base64 (AES256: 32 raw bytes; RSA: PKCS#8 DER).
	Key string `json:"key"`
}

// WorkloadCryptoRequest is the body of encrypt (Plaintext) and decrypt (Ciphertext); AAD optional. All base64.
type WorkloadCryptoRequest struct {
	Plaintext  []byte `json:"plaintext,omitempty"`
	Ciphertext []byte `json:"ciphertext,omitempty"`
	AAD        []byte `json:"aad,omitempty"`
}

// WorkloadCryptoResponse is the answer of encrypt (Ciphertext) and decrypt (Plaintext).
type WorkloadCryptoResponse struct {
	Plaintext  []byte `json:"plaintext,omitempty"`
	Ciphertext []byte `json:"ciphertext,omitempty"`
}

func (h *WorkloadKeyHandler) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.Default()
}

// The same text for "no such key", "not listed" and "other tenant": a caller learns nothing about keys it may not use.
const msgForbidden = "workload is not permitted to use this key"

func (h *WorkloadKeyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ns, name, op, ok := parseKeyPath(r.URL.Path)
	if !ok {
		http.Error(w, "want POST "+WorkloadKeyPath+"{namespace}/{name}/{unwrap|encrypt|decrypt}", http.StatusNotFound)
		return
	}
	key := ns + "/" + name
	wl, err := h.authenticate(r)
	if err != nil {
		h.log().Info("workload key request unauthenticated", "key", key, "operation", op, "detail", err.Error())
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "a valid X.509-SVID or JWT-SVID is required", http.StatusUnauthorized)
		return
	}
	id := wl.ID.String()
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultReviewTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	grant, err := h.Keys.Lookup(ctx, ns, name)
	switch {
	case errors.Is(err, ErrNoSuchKey):
		h.log().Info("workload key access denied", "spiffeID", id, "key", key, "operation", op, "reason", "no such key")
		http.Error(w, msgForbidden, http.StatusForbidden)
		return
	case err != nil:
		h.log().Error("workload key lookup failed", "spiffeID", id, "key", key, "error", err.Error())
		http.Error(w, "key lookup failed", http.StatusServiceUnavailable)
		return
	}
	if reason := authorizeWorkload(wl, grant); reason != "" {
		h.log().Info("workload key access denied", "spiffeID", id, "tenant", wl.Tenant, "key", key, "keyTenant", grant.Tenant, "operation", op, "reason", reason)
		http.Error(w, msgForbidden, http.StatusForbidden)
		return
	}
	var out any
	switch op {
	case "unwrap":
		var material []byte
		material, err = h.Service.UnwrapServiceKey(ctx, ns, name)
		if err == nil {
			out = WorkloadKeyResponse{Namespace: ns, Name: name, Key: base64.StdEncoding.EncodeToString(material)}
			clear(material)
		}
	case "encrypt", "decrypt":
		var req WorkloadCryptoRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, MaxWorkloadPayload))
		dec.DisallowUnknownFields()
		if derr := dec.Decode(&req); derr != nil {
			http.Error(w, "body must be JSON {plaintext|ciphertext, aad} with base64 values, at most 2 MiB", http.StatusBadRequest)
			return
		}
		if op == "encrypt" {
			var ct []byte
			if ct, err = h.Service.Encrypt(ctx, ns, name, req.Plaintext, req.AAD); err == nil {
				out = WorkloadCryptoResponse{Ciphertext: ct}
			}
		} else {
			var pt []byte
			if pt, err = h.Service.Decrypt(ctx, ns, name, req.Ciphertext, req.AAD); err == nil {
				out = WorkloadCryptoResponse{Plaintext: pt}
			}
		}
	}
	if err != nil {
		code, msg := keyErrorStatus(err)
		h.log().Info("workload key operation failed", "spiffeID", id, "key", key, "operation", op, "status", code, "error", err.Error())
		http.Error(w, msg, code)
		return
	}
	h.log().Info("workload key used", "spiffeID", id, "tenant", wl.Tenant, "key", key, "operation", op)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}

// keyErrorStatus maps key chain errors to HTTP without passing their text (which names internal objects) on.
func keyErrorStatus(err error) (int, string) {
	switch {
	case errors.Is(err, keychain.ErrServiceKeyNotFound):
		return http.StatusForbidden, msgForbidden
	case errors.Is(err, keychain.ErrServiceKeyNotReady):
		return http.StatusConflict, "key is not ready yet"
	case errors.Is(err, keychain.ErrUnsupported):
		return http.StatusBadRequest, "operation not supported for this key"
	case errors.Is(err, keychain.ErrIntegrity):
		return http.StatusBadRequest, "ciphertext does not authenticate"
	case errors.Is(err, keychain.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "keystore unavailable, retry later"
	}
	return http.StatusInternalServerError, "key operation failed"
}

// authorizeWorkload returns "" when wl may use the key, else the reason (for the log).
func authorizeWorkload(wl *Workload, g *KeyGrant) string {
	if wl.Tenant == "" {
		return "SPIFFE ID names no tenant"
	}
	if wl.Tenant != g.Tenant {
		return "SPIFFE ID belongs to another tenant"
	}
	for _, listed := range g.WorkloadIdentities {
		// Compare parsed IDs so that equivalent spellings cannot differ; unparsable entries never match.
		if lid, err := spiffeid.FromString(listed); err == nil && lid == wl.ID {
			return ""
		}
	}
	return "SPIFFE ID is not listed in spec.workloadIdentities"
}

func (h *WorkloadKeyHandler) authenticate(r *http.Request) (*Workload, error) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return h.verifyClientCertificate(r.TLS.PeerCertificates)
	}
	authz := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(authz, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, errors.New("no client certificate and no bearer token")
	}
	return h.SPIFFE.VerifyJWTSVID(strings.TrimSpace(token))
}

func parseKeyPath(p string) (ns, name, op string, ok bool) {
	rest, found := strings.CutPrefix(p, WorkloadKeyPath)
	if !found {
		return "", "", "", false
	}
	segs := strings.Split(rest, "/")
	if len(segs) != 3 || !slices.Contains([]string{"unwrap", "encrypt", "decrypt"}, segs[2]) || segs[0] == "" || segs[1] == "" ||
		len(segs[0]) > 63 || len(segs[1]) > 253 {
		return "", "", "", false
	}
	if slices.ContainsFunc(segs[:2], func(s string) bool { return strings.ContainsAny(s, "%?#") }) {
		return "", "", "", false
	}
	return segs[0], segs[1], segs[2], true
}
