// Package keystoreerr is the one error type of the keystore backends (aws, thales, openbao). An error renders two
// ways:
//   - at the gRPC boundary (GRPCStatus) as the exact plugin-sdk keystore status where CMK maps the case (its code and
//     message must match CMK's exactly), with the precise reason in an ErrorInfo detail (metadata "detail" and
//     "field"); otherwise as its own code and precise message;
//   - in Go (Error, errors.Is) as the precise message wrapping the keychain sentinel (keychain.ErrKeyNotFound, …), so
//     in-process callers (the key chain, the Account readiness path) see which case and which field it was.
package keystoreerr

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// Error is what every operation of a keystore backend returns.
type Error struct {
	// SDK is the exact SDK status CMK maps, or nil.
	SDK *status.Status
	// Code is used when SDK is nil.
	Code codes.Code
	// Field names the offending input ("roleArn", "keyId", "tenant", …), if any.
	Field string
	// Msg is the precise message.
	Msg string
	// Kind is the keychain sentinel, or nil.
	Kind  error
	Cause error
	// Backend names the keystore ("aws", "thales", …) in the ErrorInfo detail; Backend.GRPC fills it in.
	Backend Backend
}

func (e *Error) Error() string { return e.Msg }

// Unwrap exposes the sentinel and the cause to errors.Is / errors.As.
func (e *Error) Unwrap() []error {
	var out []error
	if e.Kind != nil {
		out = append(out, e.Kind)
	}
	if e.Cause != nil {
		out = append(out, e.Cause)
	}
	return out
}

// GRPCStatus implements the interface grpc-go uses to turn a handler's error into a status.
func (e *Error) GRPCStatus() *status.Status {
	if e.SDK == nil {
		return status.New(e.Code, e.Msg)
	}
	md := map[string]string{"detail": e.Msg}
	if e.Field != "" {
		md["field"] = e.Field
	}
	reason := "KEYSTORE_" + strings.ToUpper(string(e.Backend))
	if e.SDK.Code() == codes.InvalidArgument && e.SDK.Message() == kserrors.StatusInvalidKeyAccessData.Message() {
		reason = kserrors.ReasonMissingFields
	}
	st, err := e.SDK.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "keystore-" + string(e.Backend) + ".apeiro.io", Metadata: md})
	if err != nil {
		return e.SDK
	}
	return st
}

// Backend builds the errors of one keystore backend; its value is the backend's short name ("aws").
type Backend string

// Auth: the keystore refused the credentials or the tenant binding (CMK: "failed to authenticate").
func (b Backend) Auth(field, format string, args ...any) *Error {
	return &Error{SDK: kserrors.StatusProviderAuthenticationError, Field: field, Msg: fmt.Sprintf(format, args...), Kind: keychain.ErrDenied, Backend: b}
}

// AccessData: the keystore access data is missing or malformed (CMK: invalid key access data).
func (b Backend) AccessData(field, format string, args ...any) *Error {
	return &Error{SDK: kserrors.StatusInvalidKeyAccessData, Field: field, Msg: fmt.Sprintf(format, args...), Kind: keychain.ErrDenied, Backend: b}
}

// InvalidArg: a request field is invalid.
func (b Backend) InvalidArg(field, format string, args ...any) *Error {
	return &Error{Code: codes.InvalidArgument, Field: field, Msg: fmt.Sprintf(format, args...), Backend: b}
}

// NotFound: the key does not exist (CMK: key not found in the keystore provider).
func (b Backend) NotFound(format string, args ...any) *Error {
	return &Error{SDK: kserrors.StatusKeyNotFound, Field: "keyId", Msg: fmt.Sprintf(format, args...), Kind: keychain.ErrKeyNotFound, Backend: b}
}

// FailedPrecondition: the request cannot be served in the key's or the backend's current state; kind is the
// keychain sentinel (ErrKeyDisabled, ErrUnavailable, …) or nil.
func (b Backend) FailedPrecondition(kind error, format string, args ...any) *Error {
	return &Error{Code: codes.FailedPrecondition, Msg: fmt.Sprintf(format, args...), Kind: kind, Backend: b}
}

// GRPC converts any error into one the gRPC boundary renders precisely: an *Error as its status (naming this
// backend when it does not name one), a gRPC status as it is, anything else as Internal.
func (b Backend) GRPC(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		if e.Backend == "" {
			c := *e
			c.Backend = b
			e = &c
		}
		return e.GRPCStatus().Err()
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}
