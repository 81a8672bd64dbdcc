package keystoreconfig

import (
	"encoding/json"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
)

// MaxAccessDataBytes bounds the access data JSON that TransformCryptoAccessData decodes.
const MaxAccessDataBytes = 1 << 20

// DecodeCryptoAccessData decodes the access_data of a TransformCryptoAccessData request: CMK's JSON map of region →
// access data. Its errors are the statuses CMK maps: larger than MaxAccessDataBytes → InvalidArgument; not such a
// JSON map → invalid key access data, "cannot parse data"; an empty map → invalid key access data, missing field
// accessData.
func DecodeCryptoAccessData(raw []byte) (map[string]map[string]any, error) {
	if len(raw) > MaxAccessDataBytes {
		return nil, status.Errorf(codes.InvalidArgument, "access_data is larger than %d bytes", MaxAccessDataBytes)
	}
	var in map[string]map[string]any
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, kserrors.NewGrpcErrorWithDetails(kserrors.StatusInvalidKeyAccessData, kserrors.ReasonCannotParseData, nil)
	}
	if len(in) == 0 {
		return nil, kserrors.NewGrpcErrorWithDetails(kserrors.StatusInvalidKeyAccessData, kserrors.ReasonMissingFields, map[string]string{"missingFields": "accessData"})
	}
	return in, nil
}
