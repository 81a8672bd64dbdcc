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
	"google.golang.org/grpc/codes"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreerr"
)

// Error is what every operation of the plugin returns (see package keystoreerr).
type Error = keystoreerr.Error

// errs builds this backend's errors; the short names below keep call sites readable.
const errs = keystoreerr.Backend("aws")

var (
	authErr            = errs.Auth
	accessDataErr      = errs.AccessData
	invalidArg         = errs.InvalidArg
	notFound           = errs.NotFound
	failedPrecondition = errs.FailedPrecondition
	grpcErr            = errs.GRPC
)

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
