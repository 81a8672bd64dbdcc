package local

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"
)

const kindKeys = "keys"

// Operations is the KeystoreInstanceKeyOperation plugin.
type Operations struct {
	// Unimplemented (not Unsafe) keeps this compiling when the SDK adds RPCs
	// (v0.15 adds GetKeyVersions, already implemented below).
	operationsv1.UnimplementedKeystoreInstanceKeyOperationServer
	configv1.UnimplementedConfigServer

	*base
	// keyMu serialises read-modify-write of key records in this process.
	keyMu sync.Mutex
}

// NewOperations returns an operations plugin with the empty configuration.
func NewOperations() *Operations { return &Operations{base: newBase("operations")} }

// Configure implements configv1.ConfigServer.
func (o *Operations) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	if err := o.configure(req.GetYamlConfiguration()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &configv1.ConfigureResponse{BuildInfo: buildInfo("KeystoreInstanceKeyOperation")}, nil
}

// Close implements io.Closer (called on Deinit). Records are written
// synchronously, so there is nothing to flush.
func (o *Operations) Close() error { return nil }

// authKeys authenticates the key-management access data of a request.
func (o *Operations) authKeys(cfg *commonv1.KeystoreInstanceConfig) (*backend, string, error) {
	be := o.backend()
	inst, err := authenticate(cfg.GetValues(), be.secret, roleKeys)
	if err != nil {
		return nil, "", err
	}
	// A keystore deleted through the management plugin (shared dir) is gone.
	if _, err := be.st.get(kindMeta, inst, metaDeleted); err == nil {
		return nil, "", kserrors.StatusProviderAuthenticationError.Err()
	}
	return be, inst, nil
}

func (o *Operations) params(p *operationsv1.RequestParameters) (*backend, string, string, error) {
	be, inst, err := o.authKeys(p.GetConfig())
	if err != nil {
		return nil, "", "", err
	}
	id := strings.TrimSpace(p.GetKeyId())
	if id == "" {
		return nil, "", "", status.Error(codes.InvalidArgument, "key_id is required")
	}
	return be, inst, id, nil
}

// load returns the key or StatusKeyNotFound, for callers that do not hold
// keyMu (GetKey, Encrypt, ExtractKeyRegion, ...). A key whose deletion
// window has passed is purged, but only under keyMu and after re-reading
// it: a purge racing an update could otherwise remove a key another
// request has just changed, or the update could write a purged key back.
func (o *Operations) load(be *backend, inst, id string) (*keyRecord, error) {
	r, err := o.read(be, inst, id)
	if err != nil || !o.purgeDue(r) {
		return r, err
	}
	o.keyMu.Lock()
	defer o.keyMu.Unlock()
	return o.loadLocked(be, inst, id)
}

// loadLocked is load for callers holding keyMu.
func (o *Operations) loadLocked(be *backend, inst, id string) (*keyRecord, error) {
	r, err := o.read(be, inst, id)
	if err != nil || !o.purgeDue(r) {
		return r, err
	}
	if err := be.st.remove(kindKeys, inst, id); err != nil {
		return nil, internalErr("purging key", err)
	}
	return nil, kserrors.StatusKeyNotFound.Err()
}

func (o *Operations) purgeDue(r *keyRecord) bool {
	return r.State == StatePendingDeletion && r.DeleteAt != nil && !o.now().Before(*r.DeleteAt)
}

// read returns the stored key record or StatusKeyNotFound; no side effects.
func (o *Operations) read(be *backend, inst, id string) (*keyRecord, error) {
	b, err := be.st.get(kindKeys, inst, id)
	if errors.Is(err, errNotFound) {
		return nil, kserrors.StatusKeyNotFound.Err()
	}
	if err != nil {
		return nil, internalErr("reading key", err)
	}
	r, err := unmarshalRecord(b)
	if err != nil {
		return nil, internalErr("reading key", err)
	}
	return r, nil
}

func (o *Operations) save(be *backend, inst string, r *keyRecord, create bool) error {
	b, err := marshalRecord(r)
	if err != nil {
		return internalErr("encoding key", err)
	}
	if err := be.st.put(kindKeys, inst, r.ID, b, create); err != nil {
		if errors.Is(err, errExists) {
			return status.Errorf(codes.AlreadyExists, "key %q already exists", r.ID)
		}
		return internalErr("writing key", err)
	}
	return nil
}

// update runs fn on the key under keyMu and saves it.
func (o *Operations) update(p *operationsv1.RequestParameters, fn func(be *backend, inst string, r *keyRecord) error) (*keyRecord, error) {
	be, inst, id, err := o.params(p)
	if err != nil {
		return nil, err
	}
	o.keyMu.Lock()
	defer o.keyMu.Unlock()
	r, err := o.loadLocked(be, inst, id)
	if err != nil {
		return nil, err
	}
	if err := fn(be, inst, r); err != nil {
		return nil, err
	}
	return r, o.save(be, inst, r, false)
}

func (o *Operations) addVersion(be *backend, inst string, r *keyRecord, material []byte) error {
	vid := r.nextVersionID()
	sealed, err := seal(be.kek, material, versionAAD(inst, r.ID, vid))
	if err != nil {
		return internalErr("sealing key material", err)
	}
	r.Versions = append(r.Versions, keyVersion{ID: vid, CreatedAt: o.now().UTC(), Sealed: sealed})
	return nil
}

func versionAAD(inst, id, vid string) []byte {
	return []byte("apeiro-local-keystore/material/v1\x00" + inst + "\x00" + id + "\x00" + vid)
}

func (o *Operations) material(be *backend, inst string, r *keyRecord, v *keyVersion) ([]byte, error) {
	m, err := unseal(be.kek, v.Sealed, versionAAD(inst, r.ID, v.ID))
	if err != nil {
		return nil, internalErr("unsealing key material (wrong secret?)", err)
	}
	return m, nil
}

// GetKey implements the RPC. Unknown key → StatusKeyNotFound; bad access
// data → StatusProviderAuthenticationError / StatusInvalidKeyAccessData.
func (o *Operations) GetKey(_ context.Context, req *operationsv1.GetKeyRequest) (*operationsv1.GetKeyResponse, error) {
	be, inst, id, err := o.params(req.GetParameters())
	if err != nil {
		return nil, err
	}
	r, err := o.load(be, inst, id)
	if err != nil {
		return nil, err
	}
	resp := &operationsv1.GetKeyResponse{
		KeyId:     r.ID,
		Algorithm: r.algorithm(),
		Status:    r.State,
		Usage:     UsageEncryptDecrypt,
	}
	if v := r.latest(); v != nil {
		resp.LatestKeyVersionId = v.ID
		resp.LatestRotationTime = timestamppb.New(v.CreatedAt)
	}
	return resp, nil
}

var keyIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$`)

// Generated key IDs carry their region: lk-<region>-<32 hex>.
const keyIDPrefix = "lk-"

func newKeyID(region string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return keyIDPrefix + region + "-" + hex.EncodeToString(b)
}

// regionFromKeyID parses a generated key ID.
func regionFromKeyID(id string) (string, bool) {
	if !strings.HasPrefix(id, keyIDPrefix) || len(id) < len(keyIDPrefix)+34 {
		return "", false
	}
	suffix := id[len(id)-33:]
	if suffix[0] != '-' {
		return "", false
	}
	if _, err := hex.DecodeString(suffix[1:]); err != nil {
		return "", false
	}
	region := id[len(keyIDPrefix) : len(id)-33]
	return region, regionRE.MatchString(region)
}

// CreateKey generates a SYSTEM_MANAGED key, or creates a BYOK key waiting
// for ImportKeyMaterial. HYOK keys live in the customer's keystore and are
// not created here.
func (o *Operations) CreateKey(_ context.Context, req *operationsv1.CreateKeyRequest) (*operationsv1.CreateKeyResponse, error) {
	be, inst, err := o.authKeys(req.GetConfig())
	if err != nil {
		return nil, err
	}
	alg := req.GetAlgorithm()
	if !supportedAlgorithm(alg) {
		return nil, status.Errorf(codes.InvalidArgument, "unsupported key algorithm %s", alg)
	}
	region := req.GetRegion()
	if region == "" {
		region = be.cfg.defaultRegion()
	}
	if !be.cfg.regionAllowed(region) {
		return nil, status.Errorf(codes.InvalidArgument, "unsupported region %q", region)
	}
	id := newKeyID(region)
	if req.Id != nil {
		id = strings.TrimSpace(req.GetId())
		if !keyIDRE.MatchString(id) {
			return nil, status.Errorf(codes.InvalidArgument, "invalid key id %q (must match %s)", id, keyIDRE)
		}
	}
	r := &keyRecord{
		ID: id, Algorithm: alg.String(), KeyType: req.GetKeyType().String(),
		Region: region, CreatedAt: o.now().UTC(),
	}
	switch req.GetKeyType() {
	case operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED:
		m, err := generateMaterial(alg)
		if err != nil {
			return nil, internalErr("generating key", err)
		}
		if err := o.addVersion(be, inst, r, m); err != nil {
			return nil, err
		}
		r.State = StateEnabled
	case operationsv1.KeyType_KEY_TYPE_BYOK:
		r.State = StatePendingImport
	case operationsv1.KeyType_KEY_TYPE_HYOK:
		return nil, status.Error(codes.InvalidArgument, "HYOK keys are held in the customer's keystore; the local keystore does not create them")
	default:
		return nil, status.Error(codes.InvalidArgument, "key_type is required (SYSTEM_MANAGED or BYOK)")
	}
	o.keyMu.Lock()
	defer o.keyMu.Unlock()
	if err := o.save(be, inst, r, true); err != nil {
		return nil, err
	}
	return &operationsv1.CreateKeyResponse{KeyId: r.ID, Status: r.State}, nil
}

// DeleteKey schedules deletion after window days (default from config,
// 7 unless set); window 0 deletes at once. Valid windows are 0..30.
func (o *Operations) DeleteKey(_ context.Context, req *operationsv1.DeleteKeyRequest) (*operationsv1.DeleteKeyResponse, error) {
	be, inst, id, err := o.params(req.GetParameters())
	if err != nil {
		return nil, err
	}
	window := be.cfg.deletionWindow()
	if req.Window != nil {
		window = req.GetWindow()
	}
	if window < 0 || window > maxDeletionWindowDays {
		return nil, status.Errorf(codes.InvalidArgument, "deletion window must be 0..%d days, got %d", maxDeletionWindowDays, window)
	}
	o.keyMu.Lock()
	defer o.keyMu.Unlock()
	r, err := o.loadLocked(be, inst, id)
	if err != nil {
		return nil, err
	}
	if window == 0 {
		if err := be.st.remove(kindKeys, inst, id); err != nil {
			return nil, internalErr("deleting key", err)
		}
		return &operationsv1.DeleteKeyResponse{}, nil
	}
	if r.State != StatePendingDeletion {
		at := o.now().UTC().Add(time.Duration(window) * 24 * time.Hour)
		r.State, r.DeleteAt, r.Import = StatePendingDeletion, &at, nil
		if err := o.save(be, inst, r, false); err != nil {
			return nil, err
		}
	}
	return &operationsv1.DeleteKeyResponse{}, nil
}

// EnableKey enables a disabled key (no-op if enabled).
func (o *Operations) EnableKey(_ context.Context, req *operationsv1.EnableKeyRequest) (*operationsv1.EnableKeyResponse, error) {
	_, err := o.update(req.GetParameters(), func(_ *backend, _ string, r *keyRecord) error {
		switch r.State {
		case StateEnabled, StateDisabled:
			r.State = StateEnabled
			return nil
		default:
			return status.Errorf(codes.FailedPrecondition, "key %q is %s and cannot be enabled", r.ID, r.State)
		}
	})
	if err != nil {
		return nil, err
	}
	return &operationsv1.EnableKeyResponse{}, nil
}

// DisableKey disables an enabled key (no-op if disabled).
func (o *Operations) DisableKey(_ context.Context, req *operationsv1.DisableKeyRequest) (*operationsv1.DisableKeyResponse, error) {
	_, err := o.update(req.GetParameters(), func(_ *backend, _ string, r *keyRecord) error {
		switch r.State {
		case StateEnabled, StateDisabled:
			r.State = StateDisabled
			return nil
		default:
			return status.Errorf(codes.FailedPrecondition, "key %q is %s and cannot be disabled", r.ID, r.State)
		}
	})
	if err != nil {
		return nil, err
	}
	return &operationsv1.DisableKeyResponse{}, nil
}

// GetImportParameters creates a fresh RSA-3072 wrapping key for a BYOK key
// and returns the parameters in CMK's shape (see byok.go): publicKey,
// wrappingAlgorithm, hashFunction, validTo (24 hours) and the string
// providerParams carrying the single-use import token.
func (o *Operations) GetImportParameters(_ context.Context, req *operationsv1.GetImportParametersRequest) (*operationsv1.GetImportParametersResponse, error) {
	var params *structpb.Struct
	_, err := o.update(req.GetParameters(), func(be *backend, inst string, r *keyRecord) error {
		if r.KeyType != operationsv1.KeyType_KEY_TYPE_BYOK.String() {
			return status.Errorf(codes.FailedPrecondition, "key %q is %s; only BYOK keys take imported material", r.ID, r.KeyType)
		}
		if r.State == StatePendingDeletion {
			return status.Errorf(codes.FailedPrecondition, "key %q is pending deletion", r.ID)
		}
		if a := req.GetAlgorithm(); a != operationsv1.KeyAlgorithm_KEY_ALGORITHM_UNSPECIFIED && a != r.algorithm() {
			return status.Errorf(codes.InvalidArgument, "algorithm %s does not match key algorithm %s", a, r.Algorithm)
		}
		priv, err := rsa.GenerateKey(rand.Reader, wrappingKeyBits)
		if err != nil {
			return internalErr("generating wrapping key", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return internalErr("encoding wrapping key", err)
		}
		tok := make([]byte, 16)
		_, _ = rand.Read(tok)
		token := hex.EncodeToString(tok)
		sealed, err := seal(be.kek, der, importAAD(inst, r.ID, token))
		if err != nil {
			return internalErr("sealing wrapping key", err)
		}
		pubDER, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
		if err != nil {
			return internalErr("encoding wrapping key", err)
		}
		exp := o.now().UTC().Add(importValidity)
		r.Import = &importState{Token: token, ExpiresAt: exp, Wrapping: wrappingFor(r.algorithm()), SealedPriv: sealed}
		pp, err := encodeProviderParams(token, r.Algorithm)
		if err != nil {
			return internalErr("encoding import parameters", err)
		}
		params, err = structpb.NewStruct(map[string]any{
			ImportPublicKey:         string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})),
			ImportWrappingAlgorithm: r.Import.Wrapping,
			ImportHashFunction:      ImportHashSHA256,
			ImportProviderParams:    pp,
			ImportValidTo:           exp.Format(time.RFC3339),
		})
		if err != nil {
			return internalErr("encoding import parameters", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &operationsv1.GetImportParametersResponse{KeyId: req.GetParameters().GetKeyId(), ImportParameters: params}, nil
}

func importAAD(inst, id, token string) []byte {
	return []byte("apeiro-local-keystore/import/v1\x00" + inst + "\x00" + id + "\x00" + token)
}

// ImportKeyMaterial unwraps material wrapped under the key's current import
// parameters and adds it as a new key version (the first import enables a
// PENDING_IMPORT key; later imports rotate).
func (o *Operations) ImportKeyMaterial(_ context.Context, req *operationsv1.ImportKeyMaterialRequest) (*operationsv1.ImportKeyMaterialResponse, error) {
	_, err := o.update(req.GetParameters(), func(be *backend, inst string, r *keyRecord) error {
		if r.KeyType != operationsv1.KeyType_KEY_TYPE_BYOK.String() {
			return status.Errorf(codes.FailedPrecondition, "key %q is %s; only BYOK keys take imported material", r.ID, r.KeyType)
		}
		if r.State == StatePendingDeletion {
			return status.Errorf(codes.FailedPrecondition, "key %q is pending deletion", r.ID)
		}
		imp := r.Import
		if imp == nil {
			return status.Errorf(codes.FailedPrecondition, "no import parameters for key %q; call GetImportParameters first", r.ID)
		}
		pp, err := decodeProviderParams(req.GetImportParameters())
		if err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if subtle.ConstantTimeCompare([]byte(pp.ImportToken), []byte(imp.Token)) != 1 {
			return status.Error(codes.InvalidArgument, "import parameters do not match the key's current import token")
		}
		if a := stringField(req.GetImportParameters(), ImportAlgorithm); a != "" && a != r.Algorithm {
			return status.Errorf(codes.InvalidArgument, "import parameters: algorithm %s does not match key algorithm %s", a, r.Algorithm)
		}
		if !o.now().Before(imp.ExpiresAt) {
			return status.Error(codes.FailedPrecondition, "import parameters expired; call GetImportParameters again")
		}
		der, err := unseal(be.kek, imp.SealedPriv, importAAD(inst, r.ID, imp.Token))
		if err != nil {
			return internalErr("unsealing wrapping key", err)
		}
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return internalErr("parsing wrapping key", err)
		}
		material, err := unwrapKeyMaterial(k.(*rsa.PrivateKey), imp.Wrapping, req.GetEncryptedKeyMaterial())
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "cannot unwrap key material: %v", err)
		}
		if err := checkMaterial(r.algorithm(), material); err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if err := o.addVersion(be, inst, r, material); err != nil {
			return err
		}
		r.Import = nil
		if r.State == StatePendingImport {
			r.State = StateEnabled
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &operationsv1.ImportKeyMaterialResponse{}, nil
}

// ValidateKey checks key attributes against what this keystore supports.
func (o *Operations) ValidateKey(_ context.Context, req *operationsv1.ValidateKeyRequest) (*operationsv1.ValidateKeyResponse, error) {
	cfg := o.backend().cfg
	invalid := func(format string, args ...any) (*operationsv1.ValidateKeyResponse, error) {
		return &operationsv1.ValidateKeyResponse{IsValid: false, Message: fmt.Sprintf(format, args...)}, nil
	}
	switch req.GetKeyType() {
	case operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED, operationsv1.KeyType_KEY_TYPE_BYOK:
	case operationsv1.KeyType_KEY_TYPE_HYOK:
		return invalid("key type HYOK is not supported by the local keystore")
	default:
		return invalid("key type must be specified")
	}
	if !supportedAlgorithm(req.GetAlgorithm()) {
		return invalid("unsupported key algorithm %s", req.GetAlgorithm())
	}
	region := req.GetRegion()
	if region != "" && !cfg.regionAllowed(region) {
		return invalid("unsupported region %q", region)
	}
	if id := req.GetNativeKeyId(); id != "" {
		if !keyIDRE.MatchString(id) {
			return invalid("invalid native key id %q", id)
		}
		if kr, ok := regionFromKeyID(id); ok && region != "" && kr != region {
			return invalid("native key id is in region %q, not %q", kr, region)
		}
	}
	return &operationsv1.ValidateKeyResponse{IsValid: true, Message: "key attributes are valid"}, nil
}

// ValidateKeyAccessData checks the management access data (instanceId +
// key-management accessKey) and that every crypto entry is an object naming
// the same instance. Problems are reported as is_valid=false with a message.
func (o *Operations) ValidateKeyAccessData(_ context.Context, req *operationsv1.ValidateKeyAccessDataRequest) (*operationsv1.ValidateKeyAccessDataResponse, error) {
	be := o.backend()
	inst, err := authenticate(req.GetManagement(), be.secret, roleKeys)
	if err != nil {
		return &operationsv1.ValidateKeyAccessDataResponse{IsValid: false, Message: "management: " + status.Convert(err).Message()}, nil
	}
	var problems []string
	for region, v := range req.GetCrypto().GetFields() {
		s := v.GetStructValue()
		switch {
		case s == nil:
			problems = append(problems, fmt.Sprintf("crypto[%s]: must be an object", region))
		case stringField(s, FieldInstanceID) == "":
			problems = append(problems, fmt.Sprintf("crypto[%s]: missing %s", region, FieldInstanceID))
		case stringField(s, FieldInstanceID) != inst:
			problems = append(problems, fmt.Sprintf("crypto[%s]: %s does not match the management instance", region, FieldInstanceID))
		}
	}
	if len(problems) > 0 {
		return &operationsv1.ValidateKeyAccessDataResponse{IsValid: false, Message: strings.Join(slices.Sorted(slices.Values(problems)), "; ")}, nil
	}
	return &operationsv1.ValidateKeyAccessDataResponse{IsValid: true, Message: "access data is valid"}, nil
}

// CryptoAccessData is what TransformCryptoAccessData emits per region, as
// JSON bytes: the local keystore's crypto-layer wire format.
type CryptoAccessData struct {
	KeyID      string `json:"keyId"`
	Region     string `json:"region"`
	InstanceID string `json:"instanceId,omitempty"`
	Subject    string `json:"subject,omitempty"`
}

// TransformCryptoAccessData turns CMK's JSON map region → access data into
// region → CryptoAccessData JSON, keyed by exactly the input's regions.
func (o *Operations) TransformCryptoAccessData(_ context.Context, req *operationsv1.TransformCryptoAccessDataRequest) (*operationsv1.TransformCryptoAccessDataResponse, error) {
	if strings.TrimSpace(req.GetNativeKeyId()) == "" {
		return nil, missingFields("nativeKeyId")
	}
	in, err := keystoreconfig.DecodeCryptoAccessData(req.GetAccessData())
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(in))
	for region, v := range in {
		str := func(k string) string { s, _ := v[k].(string); return s }
		subject := str("certificateSubject")
		if subject == "" {
			subject = str(FieldSubject)
		}
		b, err := json.Marshal(CryptoAccessData{KeyID: req.GetNativeKeyId(), Region: region, InstanceID: str(FieldInstanceID), Subject: subject})
		if err != nil {
			return nil, internalErr("encoding access data", err)
		}
		out[region] = b
	}
	return &operationsv1.TransformCryptoAccessDataResponse{TransformedAccessData: out}, nil
}

// ExtractKeyRegion reads the region from a generated key ID, else looks the
// key up with the management access data.
func (o *Operations) ExtractKeyRegion(_ context.Context, req *operationsv1.ExtractKeyRegionRequest) (*operationsv1.ExtractKeyRegionResponse, error) {
	id := strings.TrimSpace(req.GetNativeKeyId())
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "native_key_id is required")
	}
	if region, ok := regionFromKeyID(id); ok {
		return &operationsv1.ExtractKeyRegionResponse{Region: region}, nil
	}
	if req.GetManagementAccessData() == nil {
		return nil, status.Errorf(codes.InvalidArgument, "cannot derive a region from key id %q without management access data", id)
	}
	be, inst, err := o.authKeys(&commonv1.KeystoreInstanceConfig{Values: req.GetManagementAccessData()})
	if err != nil {
		return nil, err
	}
	r, err := o.load(be, inst, id)
	if err != nil {
		return nil, err
	}
	return &operationsv1.ExtractKeyRegionResponse{Region: r.Region}, nil
}
