package local

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"sort"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
)

// Access data field names (KeystoreInstanceConfig.values and GrantTrust).
const (
	FieldInstanceID = "instanceId"
	FieldAccessKey  = "accessKey"
	FieldTrustID    = "trustId"
	FieldSubject    = "subject"
	FieldRegion     = "region"
	FieldTrustType  = "trustType"
)

// Roles an access key is minted for.
const (
	roleManagement = "management"
	roleKeys       = "keys"
)

// AccessKey derives the access key of role for instance. Exported for tools
// and tests that need to build access data by hand.
func AccessKey(secret []byte, role, instance string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("apeiro-local-keystore/access/v1\x00" + role + "\x00" + instance))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func kek(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("apeiro-local-keystore/kek/v1"))
	return m.Sum(nil)
}

func stringField(s *structpb.Struct, name string) string {
	if s == nil {
		return ""
	}
	v, ok := s.GetFields()[name]
	if !ok {
		return ""
	}
	return strings.TrimSpace(v.GetStringValue())
}

// missingFields builds the SDK's invalid-access-data status with the
// MISSING_FIELDS reason and the field list as metadata.
func missingFields(fields ...string) error {
	sort.Strings(fields)
	return kserrors.NewGrpcErrorWithDetails(kserrors.StatusInvalidKeyAccessData, kserrors.ReasonMissingFields,
		map[string]string{kserrors.MetadataMissingFields: strings.Join(fields, ",")})
}

// authenticate checks {instanceId, accessKey} in values for role and returns
// the instance. Missing fields → StatusInvalidKeyAccessData; a wrong key →
// StatusProviderAuthenticationError. Extra fields (CMK adds authType,
// clientCert, privateKey) are ignored.
func authenticate(values *structpb.Struct, secret []byte, role string) (string, error) {
	inst, key := stringField(values, FieldInstanceID), stringField(values, FieldAccessKey)
	var missing []string
	if inst == "" {
		missing = append(missing, FieldInstanceID)
	}
	if key == "" {
		missing = append(missing, FieldAccessKey)
	}
	if len(missing) > 0 {
		return "", missingFields(missing...)
	}
	want := AccessKey(secret, role, inst)
	if !hmac.Equal([]byte(key), []byte(want)) {
		return "", kserrors.StatusProviderAuthenticationError.Err()
	}
	return inst, nil
}
