package thales

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/pkcs11"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keyversions"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/ksop"
)

// Key states GetKey reports.
const (
	StateEnabled         = "ENABLED"
	StateDisabled        = "DISABLED"
	StatePendingDeletion = "PENDING_DELETION"
)

// Version is the only version of a token key: an HSM key object has one value for its lifetime; a new version is
// a new key (a new Account keyRef).
const Version = "v1"

// Operations is the KeystoreInstanceKeyOperation plugin.
//
// Close (from ksop.Host) leaves sessions pooled for the process: PKCS#11 modules are never finalised.
type Operations struct {
	operationsv1.UnimplementedKeystoreInstanceKeyOperationServer
	ksop.Host[*Config, backend] // Configure, Close and the current backend
}

// NewOperations returns an operations plugin with the empty configuration (nothing is opened until a call needs
// the token).
func NewOperations() *Operations {
	o := &Operations{}
	o.Init("thales", ksop.Operations, ParseConfig, newBackend)
	return o
}

func (o *Operations) backend() *backend { return o.Load() }

// locate binds the access data, parses the key id and finds the tenant's key inside one session call.
func (b *backend) withKey(ctx context.Context, p *operationsv1.RequestParameters, what string, fn func(c p11, sh pkcs11.SessionHandle, k *keyObj, ref KeyRef, tenant string) error) error {
	tenant, err := b.bind(p.GetConfig().GetValues())
	if err != nil {
		return err
	}
	id := strings.TrimSpace(p.GetKeyId())
	if id == "" {
		return invalidArg("keyId", "key_id is required")
	}
	ref, err := ParseKeyRef(id)
	if err != nil {
		return &Error{Code: codes.InvalidArgument, Field: "keyId", Msg: "key_id: " + err.Error(), Cause: err}
	}
	pl, label, err := b.token(ref.Token)
	if err != nil {
		return err
	}
	return b.run(ctx, pl, what, func(c p11, sh pkcs11.SessionHandle) error {
		k, err := find(c, sh, ref, tenant)
		if err != nil {
			return err
		}
		if k != nil && k.deletionDue(time.Now()) {
			// The deletion date has passed: the key is destroyed now, on first sight.
			if err := destroyAll(c, sh, k); err != nil {
				return err
			}
			k = nil
		}
		if k == nil {
			return notFound("key %s of tenant %q does not exist on token %q", truncate(id), tenant, label)
		}
		return fn(c, sh, k, ref, tenant)
	})
}

func algorithmOf(k *keyObj) operationsv1.KeyAlgorithm {
	switch {
	case k.keyType == pkcs11.CKK_AES && k.bits == 256:
		return operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256
	case k.keyType == pkcs11.CKK_RSA && k.bits == 3072:
		return operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072
	case k.keyType == pkcs11.CKK_RSA && k.bits == 4096:
		return operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096
	}
	return operationsv1.KeyAlgorithm_KEY_ALGORITHM_UNSPECIFIED
}

func createdAt(k *keyObj) *timestamppb.Timestamp {
	if k.created.IsZero() {
		return nil
	}
	return timestamppb.New(k.created)
}

// GetKey reports the tenant's key: algorithm, state (ENABLED, DISABLED, PENDING_DELETION) and its one version.
func (o *Operations) GetKey(ctx context.Context, req *operationsv1.GetKeyRequest) (*operationsv1.GetKeyResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	var resp *operationsv1.GetKeyResponse
	err := b.withKey(ctx, req.GetParameters(), "GetKey", func(_ p11, _ pkcs11.SessionHandle, k *keyObj, _ KeyRef, _ string) error {
		usage := "ENCRYPT_DECRYPT"
		resp = &operationsv1.GetKeyResponse{KeyId: strings.TrimSpace(req.GetParameters().GetKeyId()), Algorithm: algorithmOf(k), Status: k.state(),
			Usage: usage, LatestKeyVersionId: Version, LatestRotationTime: createdAt(k)}
		return nil
	})
	return resp, grpcErr(err)
}

// GetKeyVersions lists the key's one version (the v0.15 RPC, as a Go method until the SDK bump).
func (o *Operations) GetKeyVersions(ctx context.Context, req *keyversions.GetKeyVersionsRequest) (*keyversions.GetKeyVersionsResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	var out *keyversions.GetKeyVersionsResponse
	err := b.withKey(ctx, req.GetParameters(), "GetKeyVersions", func(_ p11, _ pkcs11.SessionHandle, k *keyObj, _ KeyRef, _ string) error {
		out = &keyversions.GetKeyVersionsResponse{Versions: []*keyversions.KeyVersion{{VersionId: Version, CreationTime: createdAt(k), Status: k.state()}}}
		return nil
	})
	return out, grpcErr(err)
}

// CreateKey generates a SYSTEM_MANAGED key inside the token: AES-256 (CKA_SENSITIVE, not extractable) or an RSA
// key pair whose private half is sensitive and not extractable. The label is the request's id, else
// <tenant>-<random>; the CKA_ID carries the tenant. Generation is one PKCS#11 call with every attribute in its
// template, so there is no half-created key. BYOK import is not offered (see docs/keystore-thales.md); HYOK keys
// are the customer's and are named, not created.
func (o *Operations) CreateKey(ctx context.Context, req *operationsv1.CreateKeyRequest) (*operationsv1.CreateKeyResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	resp, err := b.createKey(ctx, req)
	return resp, grpcErr(err)
}

func (b *backend) createKey(ctx context.Context, req *operationsv1.CreateKeyRequest) (*operationsv1.CreateKeyResponse, error) {
	tenant, err := b.bind(req.GetConfig().GetValues())
	if err != nil {
		return nil, err
	}
	switch req.GetKeyType() {
	case operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED:
	case operationsv1.KeyType_KEY_TYPE_BYOK:
		return nil, &Error{Code: codes.Unimplemented, Field: "keyType", Msg: "BYOK import is not offered by the THALES keystore: keys are generated inside the HSM (SYSTEM_MANAGED) or named as HYOK"}
	case operationsv1.KeyType_KEY_TYPE_HYOK:
		return nil, invalidArg("keyType", "HYOK keys live in the customer's HSM partition; name an existing key (PKCS#11 URI) instead of creating one")
	default:
		return nil, invalidArg("keyType", "key_type is required (SYSTEM_MANAGED)")
	}
	alg := req.GetAlgorithm()
	var bits int
	switch alg {
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256:
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072:
		bits = 3072
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096:
		bits = 4096
	default:
		return nil, invalidArg("algorithm", "unsupported key algorithm %s (AES256, RSA3072, RSA4096)", alg)
	}
	label := ""
	if req.Id != nil {
		label = strings.TrimSpace(req.GetId())
		if !validObjectLabel(label) || strings.HasPrefix(strings.ToLower(label), "pkcs11:") {
			return nil, invalidArg("id", "id %q must be a key label of 1..%d printable characters without ';', '?' or '/'", truncate(label), maxObjectLabelBytes)
		}
	} else {
		r := make([]byte, 8)
		_, _ = rand.Read(r)
		label = tenant + "-" + hex.EncodeToString(r)
	}
	pl, tokLabel, err := b.token("")
	if err != nil {
		return nil, err
	}
	ref := KeyRef{Token: tokLabel, Object: label}
	err = b.run(ctx, pl, "CreateKey", func(c p11, sh pkcs11.SessionHandle) error {
		if k, err := find(c, sh, ref, tenant); err != nil {
			return err
		} else if k != nil {
			return &Error{Code: codes.AlreadyExists, Field: "id", Msg: fmt.Sprintf("tenant %q already has a key labelled %q", tenant, label)}
		}
		id := tenantID(tenant)
		if bits == 0 {
			ref.Type = "secret-key"
			_, err := c.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
				pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
				pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true), pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
				pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false), pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
				pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true), pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
				pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
				pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			})
			return err
		}
		ref.Type = "private"
		_, _, err := c.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)},
			[]*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
				pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false), pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, bits),
				pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
				pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			},
			[]*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
				pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true), pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
				pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
				pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &operationsv1.CreateKeyResponse{KeyId: ref.String(), Status: StateEnabled}, nil
}

// setUsable turns the key's use attributes on or off: the token itself then refuses (or allows) encryption with
// it, so Disable is enforced by the HSM, not only by this plugin.
func setUsable(c p11, sh pkcs11.SessionHandle, k *keyObj, on bool) error {
	attrs := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, on)}
	if k.class == pkcs11.CKO_SECRET_KEY {
		attrs = append(attrs, pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, on))
	}
	return c.SetAttributeValue(sh, k.handle, attrs)
}

// markDeletion disables the key and appends the deletion time to the CKA_ID of every object of the key (both halves
// of a key pair).
func markDeletion(c p11, sh pkcs11.SessionHandle, k *keyObj, at time.Time) error {
	if err := setUsable(c, sh, k, false); err != nil {
		return err
	}
	hs, err := objectsWithID(c, sh, k.id)
	if err != nil {
		return err
	}
	newID := append(append([]byte{}, k.id...), []byte(":"+strconv.FormatInt(at.Unix(), 10))...)
	for _, h := range hs {
		if err := c.SetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, newID)}); err != nil {
			return err
		}
	}
	return nil
}

func objectsWithID(c p11, sh pkcs11.SessionHandle, id []byte) ([]pkcs11.ObjectHandle, error) {
	if err := c.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, id)}); err != nil {
		return nil, err
	}
	hs, _, err := c.FindObjects(sh, 8)
	_ = c.FindObjectsFinal(sh)
	return hs, err
}

// EnableKey re-enables a disabled key. A key pending deletion cannot be enabled (FailedPrecondition).
func (o *Operations) EnableKey(ctx context.Context, req *operationsv1.EnableKeyRequest) (*operationsv1.EnableKeyResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	err := b.withKey(ctx, req.GetParameters(), "EnableKey", func(c p11, sh pkcs11.SessionHandle, k *keyObj, _ KeyRef, _ string) error {
		if !k.deleteAt.IsZero() {
			return failedPrecondition(keychain.ErrKeyDisabled, "key %q is pending deletion (on %s) and cannot be enabled", k.label, k.deleteAt.Format(time.RFC3339))
		}
		return setUsable(c, sh, k, true)
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	return &operationsv1.EnableKeyResponse{}, nil
}

// DisableKey disables a key (CKA_ENCRYPT/CKA_DECRYPT off inside the token).
func (o *Operations) DisableKey(ctx context.Context, req *operationsv1.DisableKeyRequest) (*operationsv1.DisableKeyResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	err := b.withKey(ctx, req.GetParameters(), "DisableKey", func(c p11, sh pkcs11.SessionHandle, k *keyObj, _ KeyRef, _ string) error {
		return setUsable(c, sh, k, false)
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	return &operationsv1.DisableKeyResponse{}, nil
}

// maxDeletionWindowDays bounds DeleteKey's window.
const maxDeletionWindowDays = 365

// DeleteKey with a window (days, default 7 as CMK sends) disables the key and records the deletion date in
// the key's CKA_ID (state PENDING_DELETION); the first lookup on or after that date destroys the key objects. Window 0
// destroys them now. A key already pending deletion keeps its date.
func (o *Operations) DeleteKey(ctx context.Context, req *operationsv1.DeleteKeyRequest) (*operationsv1.DeleteKeyResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	window, err := ksop.DeletionWindow(req, 7, 0, maxDeletionWindowDays, "", invalidArg)
	if err != nil {
		return nil, grpcErr(err)
	}
	err = b.withKey(ctx, req.GetParameters(), "DeleteKey", func(c p11, sh pkcs11.SessionHandle, k *keyObj, ref KeyRef, tenant string) error {
		if window == 0 {
			return destroyAll(c, sh, k)
		}
		if !k.deleteAt.IsZero() {
			return nil
		}
		return markDeletion(c, sh, k, time.Now().AddDate(0, 0, int(window)))
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	return &operationsv1.DeleteKeyResponse{}, nil
}

// destroyAll destroys the key and, for a key pair, every object sharing its CKA_ID (the public half).
func destroyAll(c p11, sh pkcs11.SessionHandle, k *keyObj) error {
	hs, err := objectsWithID(c, sh, k.id)
	if err != nil {
		return err
	}
	for _, h := range hs {
		if err := c.DestroyObject(sh, h); err != nil {
			return err
		}
	}
	return nil
}

// GetImportParameters / ImportKeyMaterial: BYOK import is not offered (docs/keystore-thales.md).
func (o *Operations) GetImportParameters(context.Context, *operationsv1.GetImportParametersRequest) (*operationsv1.GetImportParametersResponse, error) {
	return nil, status.Error(codes.Unimplemented, "BYOK import is not offered by the THALES keystore: keys are generated inside the HSM or named as HYOK")
}

// ImportKeyMaterial: see GetImportParameters.
func (o *Operations) ImportKeyMaterial(context.Context, *operationsv1.ImportKeyMaterialRequest) (*operationsv1.ImportKeyMaterialResponse, error) {
	return nil, status.Error(codes.Unimplemented, "BYOK import is not offered by the THALES keystore: keys are generated inside the HSM or named as HYOK")
}

// ValidateKey checks key attributes without touching the token.
func (o *Operations) ValidateKey(_ context.Context, req *operationsv1.ValidateKeyRequest) (*operationsv1.ValidateKeyResponse, error) {
	invalid := ksop.InvalidKey
	kt := req.GetKeyType()
	switch kt {
	case operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED, operationsv1.KeyType_KEY_TYPE_HYOK:
	case operationsv1.KeyType_KEY_TYPE_BYOK:
		return invalid("key type: BYOK import is not offered by the THALES keystore")
	default:
		return invalid("key type must be specified")
	}
	switch req.GetAlgorithm() {
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072, operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096:
	default:
		return invalid("algorithm: unsupported key algorithm %s (AES256, RSA3072, RSA4096)", req.GetAlgorithm())
	}
	if id := req.GetNativeKeyId(); id != "" {
		ref, err := ParseKeyRef(id)
		if err != nil {
			return invalid("native key id: %v", err)
		}
		if ref.Token != "" {
			if _, _, err := o.backend().token(ref.Token); err != nil {
				return invalid("native key id: %v", err)
			}
		}
	} else if kt == operationsv1.KeyType_KEY_TYPE_HYOK {
		return invalid("native key id: a HYOK key must be named by its PKCS#11 URI")
	}
	return ksop.ValidKey()
}

// ValidateKeyAccessData checks the management access data (the access key, then a real login to the default
// token) and that crypto entries name no other tenant.
func (o *Operations) ValidateKeyAccessData(ctx context.Context, req *operationsv1.ValidateKeyAccessDataRequest) (*operationsv1.ValidateKeyAccessDataResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	bad := ksop.InvalidAccessData
	tenant, err := b.bind(req.GetManagement())
	if err != nil {
		return bad("management: " + err.Error())
	}
	pl, _, err := b.token("")
	if err != nil {
		return bad("management: " + err.Error())
	}
	if err := b.run(ctx, pl, "login", func(p11, pkcs11.SessionHandle) error { return nil }); err != nil {
		return bad("management: " + err.Error())
	}
	if p := ksop.CryptoProblem(req.GetCrypto(), FieldTenant, tenant, func(t string) string { return t }, func(r string, s *structpb.Struct) string {
		if inlinePIN(s.AsMap()) != "" {
			return fmt.Sprintf("crypto[%s]: %v", r, ErrInlinePIN)
		}
		return ""
	}); p != "" {
		return bad(p)
	}
	return ksop.ValidAccessData()
}

// CryptoAccessData is what TransformCryptoAccessData emits per region: the key's URI and the tenant, never a PIN.
type CryptoAccessData struct {
	KeyURI  string `json:"keyUri"`
	Region  string `json:"region"`
	Tenant  string `json:"tenant,omitempty"`
	Subject string `json:"subject,omitempty"`
}

// TransformCryptoAccessData turns CMK's JSON map region → access data into region → CryptoAccessData JSON, keyed
// by exactly the input's regions.
func (o *Operations) TransformCryptoAccessData(_ context.Context, req *operationsv1.TransformCryptoAccessDataRequest) (*operationsv1.TransformCryptoAccessDataResponse, error) {
	_, ref, in, err := ksop.TransformInput(req, ParseKeyRef)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(in))
	for region, v := range in {
		if p := inlinePIN(map[string]any(v)); p != "" {
			return nil, status.Errorf(codes.InvalidArgument, "access_data[%s]: %q: %v", region, p, ErrInlinePIN)
		}
		tenant, _ := v[FieldTenant].(string)
		raw, _ := json.Marshal(CryptoAccessData{KeyURI: ref.String(), Region: region, Tenant: tenant, Subject: ksop.CryptoSubject(v)})
		out[region] = raw
	}
	return &operationsv1.TransformCryptoAccessDataResponse{TransformedAccessData: out}, nil
}

// ExtractKeyRegion: an HSM has one region (the configured one). With management access data the key is looked up
// first, so a key that does not exist is reported as such.
func (o *Operations) ExtractKeyRegion(ctx context.Context, req *operationsv1.ExtractKeyRegionRequest) (*operationsv1.ExtractKeyRegionResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	if _, err := ParseKeyRef(req.GetNativeKeyId()); err != nil {
		return nil, grpcErr(invalidArg("nativeKeyId", "native_key_id: %v", err))
	}
	if req.GetManagementAccessData() != nil {
		p := &operationsv1.RequestParameters{KeyId: req.GetNativeKeyId()}
		p.Config = configOf(req.GetManagementAccessData())
		if err := b.withKey(ctx, p, "ExtractKeyRegion", func(p11, pkcs11.SessionHandle, *keyObj, KeyRef, string) error { return nil }); err != nil {
			return nil, grpcErr(err)
		}
	}
	return &operationsv1.ExtractKeyRegionResponse{Region: b.cfg.region()}, nil
}
