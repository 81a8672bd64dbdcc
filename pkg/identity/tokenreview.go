package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
)

// MaxTokenReviewBytes bounds a TokenReview request: a token of MaxTokenBytes plus the envelope and audiences.
const MaxTokenReviewBytes = 64 << 10

// DefaultReviewTimeout bounds one review, a JWKS refetch included (a refetch still running when it ends goes on in
// the background and serves later reviews). The API server's webhook client waits up to 30 s per attempt and
// retries; answering earlier with authenticated:false beats timing out.
const DefaultReviewTimeout = 5 * time.Second

// TokenAuthenticator is what the TokenReview handler needs; *Authenticator implements it.
type TokenAuthenticator interface {
	Authenticate(ctx context.Context, token string) (*Principal, error)
}

// TokenReviewHandler serves the authentication.k8s.io/v1 TokenReview webhook the API server calls with
// --authentication-token-webhook-config-file. A verified token is answered with the principal's username, groups
// (the workspace roles) and extra (the permissions); any other token with authenticated:false and a coarse reason.
type TokenReviewHandler struct {
	Auth    TokenAuthenticator
	Log     *slog.Logger
	Timeout time.Duration
}

var _ http.Handler = (*TokenReviewHandler)(nil)

// DecodeTokenReview parses a TokenReview request body: a JSON object of kind TokenReview, apiVersion
// authentication.k8s.io/v1 or v1beta1 (same shape), unknown fields refused, a token present.
func DecodeTokenReview(body []byte) (*authenticationv1.TokenReview, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var tr authenticationv1.TokenReview
	if err := dec.Decode(&tr); err != nil {
		return nil, fmt.Errorf("decoding TokenReview: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decoding TokenReview: trailing data")
	}
	if tr.Kind != "TokenReview" || (tr.APIVersion != "authentication.k8s.io/v1" && tr.APIVersion != "authentication.k8s.io/v1beta1") {
		return nil, fmt.Errorf("want kind TokenReview of authentication.k8s.io/v1, got %q %q", tr.Kind, tr.APIVersion)
	}
	if tr.Spec.Token == "" {
		return nil, errors.New("spec.token is empty")
	}
	return &tr, nil
}

func (h *TokenReviewHandler) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.Default()
}

func (h *TokenReviewHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
		http.Error(w, "content type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxTokenReviewBytes+1))
	if err != nil {
		http.Error(w, "reading request failed", http.StatusBadRequest)
		return
	}
	if len(body) > MaxTokenReviewBytes {
		http.Error(w, fmt.Sprintf("request is larger than %d bytes", MaxTokenReviewBytes), http.StatusRequestEntityTooLarge)
		return
	}
	tr, err := DecodeTokenReview(body)
	if err != nil {
		h.log().Info("TokenReview refused", "reason", err.Error())
		http.Error(w, "malformed TokenReview", http.StatusBadRequest)
		return
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultReviewTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	resp := authenticationv1.TokenReview{TypeMeta: tr.TypeMeta}
	p, err := h.Auth.Authenticate(ctx, tr.Spec.Token)
	if err != nil {
		reason := ReasonInvalid
		var rj *Rejection
		if errors.As(err, &rj) {
			reason = rj.Reason
		}
		// The detail goes to the log, never to the caller; the token itself is never logged.
		h.log().Info("token rejected", "reason", reason, "detail", err.Error())
		resp.Status = authenticationv1.TokenReviewStatus{Authenticated: false, Error: reason}
	} else {
		extra := map[string]authenticationv1.ExtraValue{}
		for k, v := range p.Extra {
			extra[k] = v
		}
		resp.Status = authenticationv1.TokenReviewStatus{
			Authenticated: true,
			User:          authenticationv1.UserInfo{Username: p.Username, UID: p.UID, Groups: p.Groups, Extra: extra},
		}
		h.log().Info("token accepted", "user", p.Username, "issuer", p.Issuer, "groups", len(p.Groups))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&resp)
}
