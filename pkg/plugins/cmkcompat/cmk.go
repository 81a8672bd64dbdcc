package cmkcompat

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // CMK's API allows SHA1 as the OAEP hash of a wrapping algorithm
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"time"

	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keywrap"
)

// AuthTypeCertificate is the authType CMK puts in every keystore config.
const AuthTypeCertificate = "AUTH_TYPE_CERTIFICATE"

// CMK's API enums for import parameters (cmkapi WrappingAlgorithmName and
// WrappingAlgorithmHashFunction).
var (
	WrappingAlgorithms = []string{"CKM_RSA_AES_KEY_WRAP", "CKM_RSA_PKCS_OAEP"}
	HashFunctions      = []string{"SHA1", "SHA256"}
)

// StoredKeystoreConfig is what CMK keeps for a keystore created by
// CreateKeystore (CreateKeystoreResponse.ToKeystoreConfig), after the JSON
// round trip through its database.
func StoredKeystoreConfig(resp *managementv1.CreateKeystoreResponse) (map[string]any, error) {
	mc := func(c *managementv1.ManagementConfig) map[string]any {
		var access map[string]any
		if c.GetAccessData() != nil {
			access = c.GetAccessData().GetValues().AsMap()
		}
		return map[string]any{"localityID": c.GetLocalityId(), "commonName": c.GetCommonName(), "accessData": access}
	}
	regions := make([]map[string]string, 0, len(resp.GetSupportedRegions()))
	for _, r := range resp.GetSupportedRegions() {
		regions = append(regions, map[string]string{"name": r.GetName(), "technicalName": r.GetTechnicalName()})
	}
	return jsonRoundTrip(map[string]any{
		"roleManagementConfig": mc(resp.GetRoleManagementConfig()),
		"keyManagementConfig":  mc(resp.GetKeyManagementConfig()),
		"supportedRegions":     regions,
	})
}

func jsonRoundTrip(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ClientCert is a tenant client certificate as CMK holds it: an RSA-3072 key
// in PKCS#1 PEM and the certificate PEM.
type ClientCert struct {
	Key     *rsa.PrivateKey
	KeyPEM  string
	CertPEM string
	Subject pkix.Name
}

// NewClientCert makes a self-signed stand-in for the certificate CMK gets
// from its certificate issuer (only its presence matters to keystores).
func NewClientCert(commonName string) (*ClientCert, error) {
	key, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		return nil, err
	}
	subject := pkix.Name{CommonName: commonName, Locality: []string{"cmkcompat"}}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: subject,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &ClientCert{
		Key:     key,
		KeyPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})),
		CertPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		Subject: subject,
	}, nil
}

// ConfigValues is the keystore config CMK sends: {authType, clientCert,
// privateKey} with the stored access data copied over it (maps.Copy, so
// access data wins on a clash).
func ConfigValues(cert *ClientCert, accessData map[string]any) map[string]any {
	out := map[string]any{"authType": AuthTypeCertificate, "clientCert": cert.CertPEM, "privateKey": cert.KeyPEM}
	for k, v := range accessData {
		out[k] = v
	}
	return out
}

// ImportParams is what CMK keeps from GetImportParameters
// (BuildImportParamsFromAPI): the common fields, the optional expiry and
// the provider parameters it later sends back, as stored JSON.
type ImportParams struct {
	PublicKeyPEM       string
	WrappingAlgorithm  string
	HashFunction       string
	Expires            *time.Time
	ProviderParameters []byte
}

// BuildImportParams reads GetImportParameters' map exactly as CMK does: the
// string keys publicKey, wrappingAlgorithm, hashFunction and providerParams
// are required, algorithm is kept when present, validTo is parsed as
// RFC 3339 when present.
func BuildImportParams(m map[string]any) (*ImportParams, error) {
	get := func(k string) (string, error) {
		v, ok := m[k]
		if !ok {
			return "", fmt.Errorf("field is missing: %s", k)
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("field %s is not a string", k)
		}
		return s, nil
	}
	var p ImportParams
	var err error
	if p.PublicKeyPEM, err = get("publicKey"); err != nil {
		return nil, err
	}
	if p.WrappingAlgorithm, err = get("wrappingAlgorithm"); err != nil {
		return nil, err
	}
	if p.HashFunction, err = get("hashFunction"); err != nil {
		return nil, err
	}
	pp, err := get("providerParams")
	if err != nil {
		return nil, err
	}
	params := map[string]any{"providerParams": pp}
	if a, ok := m["algorithm"].(string); ok {
		params["algorithm"] = a
	}
	if v, ok := m["validTo"].(string); ok {
		exp, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return nil, fmt.Errorf("validTo: %w", err)
		}
		p.Expires = &exp
	}
	if p.ProviderParameters, err = json.Marshal(params); err != nil {
		return nil, err
	}
	return &p, nil
}

// ProviderParamsMap is what CMK sends to ImportKeyMaterial: the stored
// provider parameters, unmarshalled.
func (p *ImportParams) ProviderParamsMap() (map[string]any, error) {
	var m map[string]any
	err := json.Unmarshal(p.ProviderParameters, &m)
	return m, err
}

// Wrap wraps material the way a customer's tooling does for the announced
// PKCS#11 mechanism and returns the base64 CMK accepts:
// CKM_RSA_PKCS_OAEP is RSA-OAEP of the material; CKM_RSA_AES_KEY_WRAP is
// RSA-OAEP of an ephemeral AES-256 key followed by RFC 5649 key wrap of the
// material under it.
func (p *ImportParams) Wrap(material []byte) (string, error) {
	block, _ := pem.Decode([]byte(p.PublicKeyPEM))
	if block == nil {
		return "", errors.New("publicKey is not PEM")
	}
	pubAny, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("publicKey: %w", err)
	}
	pub, ok := pubAny.(*rsa.PublicKey)
	if !ok {
		return "", errors.New("publicKey is not RSA")
	}
	var h hash.Hash
	switch p.HashFunction {
	case "SHA256":
		h = sha256.New()
	case "SHA1":
		h = sha1.New() //nolint:gosec // see import
	default:
		return "", fmt.Errorf("hashFunction %q is not in CMK's enum", p.HashFunction)
	}
	switch p.WrappingAlgorithm {
	case "CKM_RSA_PKCS_OAEP":
		ct, err := rsa.EncryptOAEP(h, rand.Reader, pub, material, nil)
		if err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(ct), nil
	case "CKM_RSA_AES_KEY_WRAP":
		eph := make([]byte, 32)
		if _, err := rand.Read(eph); err != nil {
			return "", err
		}
		head, err := rsa.EncryptOAEP(h, rand.Reader, pub, eph, nil)
		if err != nil {
			return "", err
		}
		body, err := keywrap.WrapPad(eph, material)
		if err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(append(head, body...)), nil
	default:
		return "", fmt.Errorf("wrappingAlgorithm %q is not in CMK's enum", p.WrappingAlgorithm)
	}
}
