package openbao

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"

	bao "github.com/openbao/openbao/api/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreerr"
)

// Error is the keystore backends' shared error (pkg/plugins/keystore/keystoreerr): at the gRPC boundary the exact SDK
// keystore status where CMK maps the case (with the precise reason in an ErrorInfo detail), otherwise its own code
// and message; in Go it wraps the keychain sentinel so the key chain and the Account readiness path can tell the
// cases apart.
type Error = keystoreerr.Error

// backendName names this keystore in ErrorInfo details (reason KEYSTORE_OPENBAO).
const backendName keystoreerr.Backend = "openbao"

func authErr(field, format string, args ...any) *Error {
	return &Error{SDK: kserrors.StatusProviderAuthenticationError, Field: field, Msg: fmt.Sprintf(format, args...), Kind: keychain.ErrDenied, Backend: backendName}
}

func accessDataErr(field, format string, args ...any) *Error {
	return &Error{SDK: kserrors.StatusInvalidKeyAccessData, Field: field, Msg: fmt.Sprintf(format, args...), Backend: backendName}
}

func invalidArg(field, format string, args ...any) *Error {
	return &Error{Code: codes.InvalidArgument, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func notFound(mount, name string) *Error {
	return &Error{SDK: kserrors.StatusKeyNotFound, Field: "keyId", Kind: keychain.ErrKeyNotFound, Backend: backendName,
		Msg: fmt.Sprintf("transit key %q does not exist in mount %s", name, mount)}
}

func disabledErr(format string, args ...any) *Error {
	return &Error{Code: codes.FailedPrecondition, Field: "keyId", Kind: keychain.ErrKeyDisabled, Msg: fmt.Sprintf(format, args...)}
}

func unavailable(format string, args ...any) *Error {
	return &Error{Code: codes.Unavailable, Kind: keychain.ErrUnavailable, Msg: fmt.Sprintf(format, args...)}
}

// grpcErr turns any error into one grpc-go renders precisely.
func grpcErr(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unknown, err.Error())
}

// mapBao classifies an error of the OpenBao client for op (e.g. "encrypt with transit/acme/k1").
func mapBao(ctx context.Context, op string, err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if ctxErr := ctx.Err(); ctxErr != nil || errors.Is(err, context.DeadlineExceeded) {
		code := codes.DeadlineExceeded
		if errors.Is(ctxErr, context.Canceled) {
			code = codes.Canceled
		}
		return &Error{Code: code, Kind: keychain.ErrUnavailable, Msg: op + ": OpenBao did not answer before the deadline", Cause: err}
	}
	var re *bao.ResponseError
	if errors.As(err, &re) {
		msg := strings.Join(re.Errors, "; ")
		switch re.StatusCode {
		case http.StatusServiceUnavailable, http.StatusInternalServerError:
			if noActiveNode(msg) {
				return &Error{Code: codes.Unavailable, Kind: keychain.ErrUnavailable, Cause: ErrStandby,
					Msg: op + ": OpenBao standby has no active node to forward to (leader election in progress?)"}
			}
			if re.StatusCode == http.StatusInternalServerError {
				return &Error{Code: codes.Unknown, Msg: fmt.Sprintf("%s: OpenBao answered 500: %s", op, trunc(msg))}
			}
			if strings.Contains(strings.ToLower(msg), "sealed") {
				return &Error{Code: codes.Unavailable, Kind: keychain.ErrUnavailable, Msg: op + ": OpenBao is sealed", Cause: ErrSealed}
			}
			return unavailable("%s: OpenBao is unavailable (503): %s", op, trunc(msg))
		case http.StatusNotImplemented:
			return &Error{Code: codes.Unavailable, Kind: keychain.ErrUnavailable, Msg: op + ": OpenBao is not initialised", Cause: ErrUninitialized}
		case http.StatusTooManyRequests:
			return unavailable("%s: OpenBao is a standby or rate limited (429): %s", op, trunc(msg))
		case http.StatusForbidden, http.StatusUnauthorized:
			return authErr("auth", "%s: OpenBao refused the plugin's token: %s", op, trunc(msg))
		case http.StatusNotFound:
			return &Error{Code: codes.NotFound, Kind: keychain.ErrKeyNotFound, Msg: fmt.Sprintf("%s: not found: %s", op, trunc(msg))}
		case http.StatusBadRequest:
			lm := strings.ToLower(msg)
			switch {
			case strings.Contains(lm, "key not found"):
				return &Error{SDK: kserrors.StatusKeyNotFound, Field: "keyId", Kind: keychain.ErrKeyNotFound, Backend: backendName, Msg: op + ": " + trunc(msg)}
			case strings.Contains(lm, "message authentication failed") || strings.Contains(lm, "invalid ciphertext") || strings.Contains(lm, "unable to decrypt"):
				return &Error{Code: codes.InvalidArgument, Field: "ciphertext", Kind: keychain.ErrIntegrity, Msg: op + ": wrapped key does not authenticate under this key and aad"}
			case strings.Contains(lm, "no handler for route") || strings.Contains(lm, "unsupported path"):
				return authErr("mount", "%s: the tenant's transit mount does not exist", op)
			}
			return invalidArg("", "%s: OpenBao rejected the request: %s", op, trunc(msg))
		}
		return &Error{Code: codes.Unknown, Msg: fmt.Sprintf("%s: OpenBao answered %d: %s", op, re.StatusCode, trunc(msg))}
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
		return unavailable("%s: OpenBao is unreachable: %v", op, err)
	}
	return &Error{Code: codes.Unknown, Msg: fmt.Sprintf("%s: %v", op, err), Cause: err}
}

// Server states behind an Unavailable error (errors.Is).
var (
	ErrSealed        = errors.New("openbao: sealed")
	ErrUninitialized = errors.New("openbao: not initialised")
	ErrStandby       = errors.New("openbao: standby without an active node")
)
