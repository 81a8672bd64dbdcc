package local

import (
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
)

// BYOK import parameters in the shape OpenKCM CMK reads and sends back.
//
// GetImportParameters returns publicKey (PEM, SubjectPublicKeyInfo),
// wrappingAlgorithm and hashFunction (CMK's enum names), providerParams (a
// string CMK stores verbatim) and validTo (RFC 3339, CMK's optional expiry).
// CMK sends back only {providerParams[, algorithm]} to ImportKeyMaterial,
// so everything the round trip needs is inside providerParams.
const (
	ImportPublicKey         = "publicKey"
	ImportWrappingAlgorithm = "wrappingAlgorithm"
	ImportHashFunction      = "hashFunction"
	ImportProviderParams    = "providerParams"
	ImportValidTo           = "validTo"
	// ImportAlgorithm is the optional key algorithm CMK passes back when a
	// provider returned it; the local keystore checks it if present.
	ImportAlgorithm = "algorithm"
)

// Wrapping algorithms, named as in CMK's API (PKCS#11 mechanisms). Both use
// RSA-OAEP with SHA-256 (hashFunction SHA256) under the 3072-bit wrapping
// key.
const (
	// WrapRSAPKCSOAEP wraps AES-256 material directly with RSA-OAEP.
	WrapRSAPKCSOAEP = "CKM_RSA_PKCS_OAEP"
	// WrapRSAAESKeyWrap wraps RSA private keys (PKCS#8 DER, too long for
	// OAEP): RSA-OAEP(ephemeral AES-256 key) || AES key wrap with padding
	// (RFC 5649) of the material under the ephemeral key; what
	// `openssl pkeyutl -pkeyopt rsa_padding_mode:oaep` plus
	// `openssl enc -id-aes256-wrap-pad` produce.
	WrapRSAAESKeyWrap = "CKM_RSA_AES_KEY_WRAP"
	// ImportHashSHA256 is the OAEP hash of both wrapping algorithms.
	ImportHashSHA256 = "SHA256"
)

// providerParams is what the local keystore puts in the providerParams
// string: the single-use token naming the import state kept with the key,
// and the key algorithm for a readable check. Versioned so a later format
// can be told apart.
type providerParams struct {
	V            int    `json:"v"`
	ImportToken  string `json:"importToken"`
	KeyAlgorithm string `json:"keyAlgorithm"`
}

const maxProviderParams = 1024

func encodeProviderParams(token, alg string) (string, error) {
	b, err := json.Marshal(providerParams{V: 1, ImportToken: token, KeyAlgorithm: alg})
	return string(b), err
}

// decodeProviderParams reads providerParams from what CMK sends back. A
// missing or foreign value is the caller's error (InvalidArgument).
func decodeProviderParams(s *structpb.Struct) (*providerParams, error) {
	v, ok := s.GetFields()[ImportProviderParams]
	if !ok {
		return nil, fmt.Errorf("import parameters: field is missing: %s", ImportProviderParams)
	}
	raw, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		return nil, fmt.Errorf("import parameters: %s must be a string", ImportProviderParams)
	}
	if len(raw.StringValue) > maxProviderParams {
		return nil, fmt.Errorf("import parameters: %s is too long", ImportProviderParams)
	}
	var p providerParams
	dec := json.NewDecoder(strings.NewReader(raw.StringValue))
	if err := dec.Decode(&p); err != nil || p.V != 1 || p.ImportToken == "" {
		return nil, fmt.Errorf("import parameters: %s was not issued by this keystore", ImportProviderParams)
	}
	return &p, nil
}
