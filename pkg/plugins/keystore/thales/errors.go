package thales

import (
	"context"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
	"google.golang.org/grpc/codes"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreerr"
)

const (
	codeFailedPrecondition = codes.FailedPrecondition
	codeUnavailable        = codes.Unavailable
	codeDeadlineExceeded   = codes.DeadlineExceeded
)

var (
	errUnavailableKind = keychain.ErrUnavailable
	errDeniedKind      = keychain.ErrDenied
)

// Error is what every operation of the plugin returns (see package keystoreerr).
type Error = keystoreerr.Error

// errs builds this backend's errors; the short names below keep call sites readable.
const errs = keystoreerr.Backend("thales")

var (
	authErr            = errs.Auth
	accessDataErr      = errs.AccessData
	invalidArg         = errs.InvalidArg
	notFound           = errs.NotFound
	failedPrecondition = errs.FailedPrecondition
	grpcErr            = errs.GRPC
)

// mapP11 turns a PKCS#11 return value into an *Error. A wrong PIN is an authentication failure, never "key not
// found"; a locked PIN, a missing or removed token and device errors are told apart.
func mapP11(what string, err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var rv pkcs11.Error
	if !errors.As(err, &rv) {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return &Error{Code: codes.DeadlineExceeded, Msg: what + ": the token did not answer within the deadline", Kind: keychain.ErrUnavailable, Cause: err}
		case errors.Is(err, context.Canceled):
			return &Error{Code: codes.Canceled, Msg: what + ": canceled", Kind: keychain.ErrUnavailable, Cause: err}
		}
		return &Error{SDK: kserrors.StatusKeyGenericErr, Msg: fmt.Sprintf("%s: %v", what, err), Cause: err}
	}
	detail := fmt.Sprintf("%s: %v", what, err)
	switch uint(rv) {
	case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE:
		return &Error{SDK: kserrors.StatusProviderAuthenticationError, Field: "pin", Msg: detail + " (the configured PIN is wrong)", Kind: keychain.ErrDenied, Cause: err}
	case pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_PIN_EXPIRED:
		return &Error{SDK: kserrors.StatusProviderAuthenticationError, Field: "pin", Msg: detail + " (the token's user PIN is locked or expired; the security officer must reset it)", Kind: keychain.ErrDenied, Cause: err}
	case pkcs11.CKR_USER_NOT_LOGGED_IN:
		return &Error{Code: codes.Unavailable, Msg: detail + " (the token logged the session out; retried calls log in again)", Kind: keychain.ErrUnavailable, Cause: err}
	case pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_SLOT_ID_INVALID:
		return &Error{Code: codes.Unavailable, Field: "token", Msg: detail + " (the token is not present)", Kind: keychain.ErrUnavailable, Cause: err}
	case pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_SESSION_COUNT, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_FUNCTION_FAILED:
		return &Error{Code: codes.Unavailable, Msg: detail, Kind: keychain.ErrUnavailable, Cause: err}
	case pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED, pkcs11.CKR_KEY_HANDLE_INVALID:
		return &Error{Code: codes.FailedPrecondition, Field: "keyId", Msg: detail + " (the key is disabled for this use)", Kind: keychain.ErrKeyDisabled, Cause: err}
	case pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE:
		return &Error{Code: codes.InvalidArgument, Field: "ciphertext", Msg: detail, Kind: keychain.ErrIntegrity, Cause: err}
	case pkcs11.CKR_ATTRIBUTE_READ_ONLY, pkcs11.CKR_ATTRIBUTE_SENSITIVE, pkcs11.CKR_KEY_UNEXTRACTABLE:
		return &Error{Code: codes.FailedPrecondition, Msg: detail, Cause: err}
	case pkcs11.CKR_MECHANISM_INVALID, pkcs11.CKR_MECHANISM_PARAM_INVALID, pkcs11.CKR_KEY_TYPE_INCONSISTENT, pkcs11.CKR_ARGUMENTS_BAD:
		return &Error{Code: codes.FailedPrecondition, Msg: detail + " (the token does not support this mechanism for the key)", Cause: err}
	}
	return &Error{SDK: kserrors.StatusKeyGenericErr, Msg: detail, Cause: err}
}
