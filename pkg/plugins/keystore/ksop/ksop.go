// Package ksop is the request scaffolding the keystore backends (aws, openbao, thales) share: Configure, the
// CreateKeystore answer, GrantTrust/RemoveTrust input checks, the crypto access data checks and the answers of the
// Validate* RPCs. What a backend does with its peer stays in the backend; only the steps that read the same request
// the same way live here, so a fix to one of them reaches every backend.
//
// Errors: the helpers build their errors with the plugin's own constructors (ErrorFunc) and shorten hostile values
// with the plugin's own truncation, so a plugin answers exactly as it did when it held this code itself.
package ksop

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreerr"
)

// Plugin types as build info names them.
const (
	Provider   = "KeystoreProvider"
	Operations = "KeystoreInstanceKeyOperation"
)

// ErrorFunc is one of a plugin's error constructors (invalidArg, accessDataErr, authErr).
type ErrorFunc func(field, format string, args ...any) *keystoreerr.Error

// BuildInfo is the build info a keystore plugin reports from Configure.
func BuildInfo(backend, pluginType string) *string {
	s := fmt.Sprintf(`{"plugin":"apeiro-keystore-%s","type":%q}`, backend, pluginType)
	return &s
}

// KeystoreResponse is CreateKeystore's answer for a new instance: role and key management get the same common name
// and each its own copy of the access data; the locality is the first supported region, else fallback.
func KeystoreResponse(regions []keystoreconfig.Region, fallback, commonName string, access map[string]any) *managementv1.CreateKeystoreResponse {
	config := func() *commonv1.KeystoreInstanceConfig {
		s, _ := structpb.NewStruct(access)
		return &commonv1.KeystoreInstanceConfig{Values: s}
	}
	locality := fallback
	if len(regions) > 0 {
		locality = regions[0].TechnicalName
	}
	resp := &managementv1.CreateKeystoreResponse{
		RoleManagementConfig: &managementv1.ManagementConfig{LocalityId: locality, CommonName: commonName, AccessData: config()},
		KeyManagementConfig:  &managementv1.ManagementConfig{LocalityId: locality, CommonName: commonName, AccessData: config()},
	}
	for _, r := range regions {
		resp.SupportedRegions = append(resp.SupportedRegions, &managementv1.SupportedRegion{Name: r.Name, TechnicalName: r.TechnicalName})
	}
	return resp
}

// MaxSubjectBytes bounds a trusted certificate subject.
const MaxSubjectBytes = 1024

// FieldTrustID is the access data key naming a trust record.
const FieldTrustID = "trustId"

var trustIDRE = regexp.MustCompile(`^(management|crypto)-[0-9a-f]{16}$`)

// Trust is a checked GrantTrust request and the id of its record.
type Trust struct {
	Subject string
	Kind    string // "management" or "crypto"
	Region  string // trimmed; the backend checks it against its own rules
	ID      string
}

// ParseGrant checks GrantTrust's subject and type and derives the record's id from kind, subject and region, so
// granting the same trust twice names the same record (the grant is idempotent). invalid is the plugin's
// InvalidArgument constructor.
func ParseGrant(req *managementv1.GrantTrustRequest, invalid ErrorFunc) (Trust, error) {
	t := Trust{Subject: strings.TrimSpace(req.GetSubject()), Region: strings.TrimSpace(req.GetRegion())}
	if t.Subject == "" || len(t.Subject) > MaxSubjectBytes {
		return Trust{}, invalid("subject", "subject is required (at most %d bytes)", MaxSubjectBytes)
	}
	switch req.GetType() {
	case managementv1.TrustType_TRUST_TYPE_MANAGEMENT:
		t.Kind = "management"
	case managementv1.TrustType_TRUST_TYPE_CRYPTO:
		t.Kind = "crypto"
	default:
		return Trust{}, invalid("type", "trust type is required (MANAGEMENT or CRYPTO)")
	}
	sum := sha256.Sum256([]byte(t.Kind + "\x00" + t.Subject + "\x00" + t.Region))
	t.ID = t.Kind + "-" + hex.EncodeToString(sum[:8])
	return t, nil
}

// TrustID is the trust id RemoveTrust's access data names; anything but an id ParseGrant makes is refused with the
// plugin's access data error (the value quoted through trunc: it is the caller's input).
func TrustID(accessData *structpb.Struct, accessErr ErrorFunc, trunc func(string) string) (string, error) {
	id := Str(accessData, FieldTrustID)
	if !trustIDRE.MatchString(id) {
		return "", accessErr(FieldTrustID, "access_data.trustId %q is not a trust id from GrantTrust", trunc(id))
	}
	return id, nil
}

// Str is the string field k of s, trimmed ("" when s is nil or the field is absent or not a string).
func Str(s *structpb.Struct, k string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(s.GetFields()[k].GetStringValue())
}

// InvalidKey is ValidateKey's "not valid" answer: a problem with the attributes is an answer, not an RPC error.
func InvalidKey(format string, args ...any) (*operationsv1.ValidateKeyResponse, error) {
	return &operationsv1.ValidateKeyResponse{IsValid: false, Message: fmt.Sprintf(format, args...)}, nil
}

// ValidKey is ValidateKey's "valid" answer.
func ValidKey() (*operationsv1.ValidateKeyResponse, error) {
	return &operationsv1.ValidateKeyResponse{IsValid: true, Message: "key attributes are valid"}, nil
}

// InvalidAccessData is ValidateKeyAccessData's "not valid" answer (msg names the field).
func InvalidAccessData(msg string) (*operationsv1.ValidateKeyAccessDataResponse, error) {
	return &operationsv1.ValidateKeyAccessDataResponse{IsValid: false, Message: msg}, nil
}

// ValidAccessData is ValidateKeyAccessData's "valid" answer.
func ValidAccessData() (*operationsv1.ValidateKeyAccessDataResponse, error) {
	return &operationsv1.ValidateKeyAccessDataResponse{IsValid: true, Message: "access data is valid"}, nil
}

// CryptoProblem checks the crypto entries of ValidateKeyAccessData for a backend whose crypto entries may only
// repeat the management tenant: each entry must be an object, its tenant (if set, quoted through trunc) must be
// tenant, and extra (may be nil) checks the rest. It returns the first problem found, or "".
func CryptoProblem(crypto *structpb.Struct, fieldTenant, tenant string, trunc func(string) string, extra func(region string, entry *structpb.Struct) string) string {
	for r, v := range crypto.GetFields() {
		s := v.GetStructValue()
		if s == nil {
			return fmt.Sprintf("crypto[%s]: must be an object", r)
		}
		if t := Str(s, fieldTenant); t != "" && t != tenant {
			return fmt.Sprintf("crypto[%s]: tenant %q differs from the management tenant %q", r, trunc(t), tenant)
		}
		if extra != nil {
			if p := extra(r, s); p != "" {
				return p
			}
		}
	}
	return ""
}

// TransformInput reads TransformCryptoAccessData's request: the native key id, trimmed (a missing one is the SDK's
// "invalid key access data" naming the field, as CMK expects), parsed by parseID, then the region → access data map
// (keystoreconfig.DecodeCryptoAccessData). A parse error that is a backend *keystoreerr.Error is returned as it is;
// any other becomes InvalidArgument naming native_key_id. The returned errors are gRPC-ready.
func TransformInput[K any](req *operationsv1.TransformCryptoAccessDataRequest, parseID func(string) (K, error)) (string, K, map[string]map[string]any, error) {
	var zero K
	id := strings.TrimSpace(req.GetNativeKeyId())
	if id == "" {
		return "", zero, nil, kserrors.NewGrpcErrorWithDetails(kserrors.StatusInvalidKeyAccessData, kserrors.ReasonMissingFields, map[string]string{"missingFields": "nativeKeyId"})
	}
	key, err := parseID(id)
	if err != nil {
		var e *keystoreerr.Error
		if errors.As(err, &e) {
			return "", zero, nil, e
		}
		return "", zero, nil, status.Errorf(codes.InvalidArgument, "native_key_id: %v", err)
	}
	in, err := keystoreconfig.DecodeCryptoAccessData(req.GetAccessData())
	if err != nil {
		return "", zero, nil, err
	}
	return id, key, in, nil
}

// CryptoSubject is the certificate subject a crypto access data entry names (certificateSubject, else subject).
func CryptoSubject(entry map[string]any) string {
	s, _ := entry["certificateSubject"].(string)
	if s == "" {
		s, _ = entry["subject"].(string)
	}
	return s
}

// DeletionWindow is DeleteKey's window in days: the request's, else def; outside min..max it is refused with
// invalid (what, e.g. " for AWS KMS", ends the range in the message).
func DeletionWindow(req *operationsv1.DeleteKeyRequest, def, minDays, maxDays int32, what string, invalid ErrorFunc) (int32, error) {
	window := def
	if req.Window != nil {
		window = req.GetWindow()
	}
	if window < minDays || window > maxDays {
		return 0, invalid("window", "deletion window must be %d..%d days%s, got %d", minDays, maxDays, what, window)
	}
	return window, nil
}
