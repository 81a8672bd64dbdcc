package aws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// Error is what every operation of the plugin returns. It renders two ways:
//   - at the gRPC boundary (GRPCStatus) as the exact SDK keystore status where CMK maps the case (code and message
//     must match exactly), with the precise reason in an ErrorInfo detail (metadata "detail", "field"); otherwise as
//     its own code and precise message;
//   - in Go (Error, errors.Is) as the precise message wrapping the keychain sentinel (keychain.ErrKeyNotFound, …), so
//     in-process callers (the key chain, the webhook) see which field was wrong.
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
	reason := "KEYSTORE_AWS"
	if e.SDK.Code() == codes.InvalidArgument && e.SDK.Message() == kserrors.StatusInvalidKeyAccessData.Message() {
		reason = kserrors.ReasonMissingFields
	}
	st, err := e.SDK.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "keystore-aws.apeiro.io", Metadata: md})
	if err != nil {
		return e.SDK
	}
	return st
}

func authErr(field, format string, args ...any) *Error {
	return &Error{SDK: kserrors.StatusProviderAuthenticationError, Field: field, Msg: fmt.Sprintf(format, args...), Kind: keychain.ErrDenied}
}

func accessDataErr(field, format string, args ...any) *Error {
	return &Error{SDK: kserrors.StatusInvalidKeyAccessData, Field: field, Msg: fmt.Sprintf(format, args...), Kind: keychain.ErrDenied}
}

func invalidArg(field, format string, args ...any) *Error {
	return &Error{Code: codes.InvalidArgument, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *Error {
	return &Error{SDK: kserrors.StatusKeyNotFound, Field: "keyId", Msg: fmt.Sprintf(format, args...), Kind: keychain.ErrKeyNotFound}
}

func failedPrecondition(kind error, format string, args ...any) *Error {
	return &Error{Code: codes.FailedPrecondition, Msg: fmt.Sprintf(format, args...), Kind: kind}
}

// grpcErr converts any error into one the gRPC boundary renders precisely.
func grpcErr(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e.GRPCStatus().Err()
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}

// Names of AWS error codes by what they mean to us.
var (
	awsNotFound = []string{"NotFoundException", "NoSuchEntity", "NoSuchEntityException"}
	awsDenied   = []string{
		"AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "UnrecognizedClientException",
		"SignatureDoesNotMatch", "IncompleteSignature", "ExpiredToken", "ExpiredTokenException", "InvalidIdentityToken",
		"IDPRejectedClaim", "IDPCommunicationError", "RegionDisabledException", "PackedPolicyTooLarge",
		"MissingAuthenticationToken", "InvalidToken",
	}
	awsThrottled = []string{"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded", "LimitExceededException"}
	awsDisabled  = []string{"DisabledException"}
	awsState     = []string{"KMSInvalidStateException", "IncorrectKeyMaterialException", "ExpiredImportTokenException", "InvalidImportTokenException"}
	awsIntegrity = []string{"InvalidCiphertextException", "IncorrectKeyException", "InvalidKeyUsageException"}
	awsInvalid   = []string{"ValidationException", "ValidationError", "InvalidArnException", "InvalidParameterValue", "InvalidParameterCombination", "MalformedPolicyDocument", "InvalidInput", "EntityAlreadyExists", "AlreadyExistsException", "UnsupportedOperationException", "InvalidAliasNameException"}
)

func in(code string, set []string) bool {
	for _, s := range set {
		if s == code {
			return true
		}
	}
	return false
}

// mapAWS turns an AWS SDK error (from a KMS/STS/IAM call or a credential refresh) into an *Error. what names the
// operation ("GetKey", "assuming role …") for the message.
func mapAWS(ctx context.Context, what string, err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		code, msg := api.ErrorCode(), api.ErrorMessage()
		detail := fmt.Sprintf("%s: AWS %s: %s", what, code, msg)
		switch {
		case in(code, awsNotFound):
			return notFound("%s", detail)
		case in(code, awsDenied):
			return &Error{SDK: kserrors.StatusProviderAuthenticationError, Msg: detail, Kind: keychain.ErrDenied, Cause: err}
		case in(code, awsThrottled):
			return &Error{Code: codes.Unavailable, Msg: detail + " (throttled; retried with backoff until the attempts or the deadline ran out)", Kind: keychain.ErrUnavailable, Cause: err}
		case in(code, awsDisabled):
			return &Error{Code: codes.FailedPrecondition, Msg: detail, Kind: keychain.ErrKeyDisabled, Cause: err}
		case in(code, awsState):
			return &Error{Code: codes.FailedPrecondition, Msg: detail, Kind: keychain.ErrKeyDisabled, Cause: err}
		case in(code, awsIntegrity):
			return &Error{Code: codes.InvalidArgument, Msg: detail, Kind: keychain.ErrIntegrity, Cause: err}
		case in(code, awsInvalid):
			return &Error{Code: codes.InvalidArgument, Msg: detail, Cause: err}
		}
		if httpStatus(err) >= 500 {
			return &Error{Code: codes.Unavailable, Msg: detail, Kind: keychain.ErrUnavailable, Cause: err}
		}
		return &Error{SDK: kserrors.StatusKeyGenericErr, Msg: detail, Cause: err}
	}
	if code := httpStatus(err); code >= 500 {
		// A server error whose body is not even an AWS error: the endpoint is failing, retried already.
		return &Error{Code: codes.Unavailable, Msg: fmt.Sprintf("%s: AWS endpoint failed with HTTP %d (after retries)", what, code), Kind: keychain.ErrUnavailable, Cause: err}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (ctx != nil && errors.Is(ctx.Err(), context.DeadlineExceeded)):
		return &Error{Code: codes.DeadlineExceeded, Msg: what + ": AWS did not answer within the deadline", Kind: keychain.ErrUnavailable, Cause: err}
	case errors.Is(err, context.Canceled):
		return &Error{Code: codes.Canceled, Msg: what + ": canceled", Kind: keychain.ErrUnavailable, Cause: err}
	case isNetErr(err):
		return &Error{Code: codes.Unavailable, Msg: fmt.Sprintf("%s: AWS endpoint unreachable: %v", what, rootCause(err)), Kind: keychain.ErrUnavailable, Cause: err}
	}
	var tokErr *tokenError
	if errors.As(err, &tokErr) {
		return &Error{SDK: kserrors.StatusProviderAuthenticationError, Field: "webIdentity.tokenFile", Msg: what + ": " + tokErr.Error(), Kind: keychain.ErrDenied, Cause: err}
	}
	return &Error{SDK: kserrors.StatusKeyGenericErr, Msg: fmt.Sprintf("%s: %v", what, err), Cause: err}
}

func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func isNetErr(err error) bool {
	var ne net.Error
	var oe *net.OpError
	var maxAttempts *retry.MaxAttemptsError
	return errors.As(err, &oe) || errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		(errors.As(err, &maxAttempts) && isNetErr(maxAttempts.Err)) || strings.Contains(err.Error(), "connection refused") ||
		strings.Contains(err.Error(), "retry quota exceeded")
}

func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
