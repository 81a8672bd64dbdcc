package aws

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keyversions"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/ksop"
)

// Key states as GetKey reports them (upper snake case of KMS KeyState, as the OpenKCM AWS plugin does).
const (
	StateEnabled         = "ENABLED"
	StateDisabled        = "DISABLED"
	StatePendingDeletion = "PENDING_DELETION"
	StatePendingImport   = "PENDING_IMPORT"
)

// Import parameter keys. CMK reads publicKey, wrappingAlgorithm, hashFunction, providerParams (a string) and the
// optional validTo from GetImportParameters, and sends back only {providerParams[, algorithm]} to
// ImportKeyMaterial; providerParams is therefore the JSON of everything the import needs.
const (
	ImportPublicKey         = "publicKey"
	ImportWrappingAlgorithm = "wrappingAlgorithm"
	ImportHashFunction      = "hashFunction"
	ImportProviderParams    = "providerParams"
	ImportValidTo           = "validTo"
	ImportAlgorithm         = "algorithm"
)

// WrappingMechanism is the wrapping algorithm as CMK's API names it (its enum is CKM_RSA_PKCS_OAEP |
// CKM_RSA_AES_KEY_WRAP); KMS calls the same mechanism RSAES_OAEP_SHA_256.
const WrappingMechanism = "CKM_RSA_PKCS_OAEP"

// providerParams is the JSON inside ImportProviderParams.
type providerParams struct {
	ImportToken       string `json:"importToken"` // base64
	KeyARN            string `json:"keyArn"`
	WrappingAlgorithm string `json:"wrappingAlgorithm"`
	ValidTo           string `json:"validTo,omitempty"`
}

// Operations is the KeystoreInstanceKeyOperation plugin.
type Operations struct {
	// Unimplemented (not Unsafe) keeps this compiling when the SDK adds RPCs (v0.15 adds GetKeyVersions, implemented
	// below as a Go method with the v0.15 shape).
	operationsv1.UnimplementedKeystoreInstanceKeyOperationServer
	ksop.Host[*Config, backend] // Configure, Close and the current backend

	factory clientFactory
}

// NewOperations returns an operations plugin with the empty configuration (IRSA from the environment, resolved on
// the first call).
func NewOperations() *Operations { return newOperations(defaultFactory()) }

func newOperations(f clientFactory) *Operations {
	o := &Operations{factory: f}
	o.Init("aws", ksop.Operations, ParseConfig, f.build)
	return o
}

// build is the backend on this factory's clients (what Configure installs).
func (f clientFactory) build(cfg *Config) *backend { return newBackend(cfg, f) }

func (o *Operations) backend() *backend { return o.Load() }

func keyIDOf(p *operationsv1.RequestParameters) (string, error) {
	id := strings.TrimSpace(p.GetKeyId())
	if id == "" {
		return "", invalidArg("keyId", "key_id is required")
	}
	return id, nil
}

// keyOf resolves the request's key: the KMS client of the tenant's role and the key reference (checked against the
// role's account and region).
func (b *backend) keyOf(p *operationsv1.RequestParameters) (kmsAPI, KeyRef, error) {
	id, err := keyIDOf(p)
	if err != nil {
		return nil, KeyRef{}, err
	}
	c, k, _, err := b.keyClient(p.GetConfig().GetValues(), id)
	return c, k, err
}

// describeKey resolves the request's key and reads its metadata through the tenant's role.
func (b *backend) describeKey(ctx context.Context, p *operationsv1.RequestParameters) (kmsAPI, *kmstypes.KeyMetadata, error) {
	c, k, err := b.keyOf(p)
	if err != nil {
		return nil, nil, err
	}
	md, err := b.describe(ctx, c, k)
	if err != nil {
		return nil, nil, err
	}
	return c, md, nil
}

// describe returns the key's metadata through the tenant's role.
func (b *backend) describe(ctx context.Context, c kmsAPI, k KeyRef) (*kmstypes.KeyMetadata, error) {
	out, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: sdkaws.String(k.Raw)})
	if err != nil {
		return nil, mapAWS(ctx, "DescribeKey "+truncate(k.Raw), err)
	}
	if out.KeyMetadata == nil {
		return nil, &Error{SDK: kserrors.StatusKeyGenericErr, Msg: "DescribeKey returned no metadata"}
	}
	return out.KeyMetadata, nil
}

// stateName renders a KMS key state in upper snake case (PendingDeletion → PENDING_DELETION).
func stateName(s kmstypes.KeyState) string {
	var b strings.Builder
	for i, r := range string(s) {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	if b.Len() == 0 {
		return "UNKNOWN"
	}
	return b.String()
}

func algorithmOf(spec kmstypes.KeySpec) operationsv1.KeyAlgorithm {
	switch spec {
	case kmstypes.KeySpecSymmetricDefault:
		return operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256
	case kmstypes.KeySpecRsa3072:
		return operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072
	case kmstypes.KeySpecRsa4096:
		return operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096
	}
	return operationsv1.KeyAlgorithm_KEY_ALGORITHM_UNSPECIFIED
}

func keySpecOf(a operationsv1.KeyAlgorithm) (kmstypes.KeySpec, bool) {
	switch a {
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256:
		return kmstypes.KeySpecSymmetricDefault, true
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072:
		return kmstypes.KeySpecRsa3072, true
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096:
		return kmstypes.KeySpecRsa4096, true
	}
	return "", false
}

// versions lists the key's material versions oldest first: v1 at creation, then one per rotation (KMS keeps every
// version behind one ARN; Decrypt picks the right one). Keys that cannot rotate have v1 only.
func (b *backend) versions(ctx context.Context, c kmsAPI, md *kmstypes.KeyMetadata) []*keyversions.KeyVersion {
	st := stateName(md.KeyState)
	created := sdkaws.ToTime(md.CreationDate)
	if md.KeyState == kmstypes.KeyStatePendingImport {
		return nil
	}
	out := []*keyversions.KeyVersion{{VersionId: "v1", CreationTime: timestamppb.New(created), Status: st}}
	if md.KeySpec != kmstypes.KeySpecSymmetricDefault || md.KeyState == kmstypes.KeyStatePendingDeletion {
		return out
	}
	var marker *string
	for page := 0; page < 10; page++ { // bounded: 10 pages of 1000 rotations
		r, err := c.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: md.Arn, Marker: marker})
		if err != nil {
			// Rotation history is informative; a key whose history cannot be listed still has v1.
			return out
		}
		for _, e := range r.Rotations {
			out = append(out, &keyversions.KeyVersion{VersionId: fmt.Sprintf("v%d", len(out)+1), CreationTime: timestamppb.New(sdkaws.ToTime(e.RotationDate)), Status: st})
		}
		if !r.Truncated || r.NextMarker == nil {
			break
		}
		marker = r.NextMarker
	}
	return out
}

// GetKey implements the RPC: DescribeKey through the tenant's role. Missing key → StatusKeyNotFound; a role the
// tenant may not use, or credentials AWS refuses → StatusProviderAuthenticationError; missing access data →
// StatusInvalidKeyAccessData.
func (o *Operations) GetKey(ctx context.Context, req *operationsv1.GetKeyRequest) (*operationsv1.GetKeyResponse, error) {
	resp, err := o.backend().getKey(ctx, req.GetParameters())
	return resp, grpcErr(err)
}

func (b *backend) getKey(ctx context.Context, p *operationsv1.RequestParameters) (*operationsv1.GetKeyResponse, error) {
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	c, md, err := b.describeKey(ctx, p)
	if err != nil {
		return nil, err
	}
	resp := &operationsv1.GetKeyResponse{
		KeyId:     sdkaws.ToString(md.Arn),
		Algorithm: algorithmOf(md.KeySpec),
		Status:    stateName(md.KeyState),
		Usage:     string(md.KeyUsage),
	}
	if vs := b.versions(ctx, c, md); len(vs) > 0 {
		last := vs[len(vs)-1]
		resp.LatestKeyVersionId = last.VersionId
		resp.LatestRotationTime = last.CreationTime
	}
	return resp, nil
}

// GetKeyVersions lists the key's versions oldest first (the v0.15 RPC, as a Go method until the SDK bump).
func (o *Operations) GetKeyVersions(ctx context.Context, req *keyversions.GetKeyVersionsRequest) (*keyversions.GetKeyVersionsResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	c, md, err := b.describeKey(ctx, req.GetParameters())
	if err != nil {
		return nil, grpcErr(err)
	}
	return &keyversions.GetKeyVersionsResponse{Versions: b.versions(ctx, c, md)}, nil
}

var aliasNameRE = aliasRE

// CreateKey creates a SYSTEM_MANAGED key (KMS generates the material) or a BYOK key (origin EXTERNAL, waiting for
// ImportKeyMaterial) in the tenant's account, tagged with the tenant. HYOK keys are the customer's: not created
// here. An optional id becomes alias/<id>; if the alias cannot be created the new key is scheduled for deletion
// (minimum window) and the error says so, so no half-created key is left without a status saying so.
func (o *Operations) CreateKey(ctx context.Context, req *operationsv1.CreateKeyRequest) (*operationsv1.CreateKeyResponse, error) {
	resp, err := o.backend().createKey(ctx, req)
	return resp, grpcErr(err)
}

func (b *backend) createKey(ctx context.Context, req *operationsv1.CreateKeyRequest) (*operationsv1.CreateKeyResponse, error) {
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	bd, err := b.bind(req.GetConfig().GetValues())
	if err != nil {
		return nil, err
	}
	spec, ok := keySpecOf(req.GetAlgorithm())
	if !ok {
		return nil, invalidArg("algorithm", "unsupported key algorithm %s (AES256, RSA3072, RSA4096)", req.GetAlgorithm())
	}
	in := &kms.CreateKeyInput{
		KeySpec:     spec,
		KeyUsage:    kmstypes.KeyUsageTypeEncryptDecrypt,
		Description: sdkaws.String("apeiro-cmk key of tenant " + bd.tenant),
		Tags:        []kmstypes.Tag{{TagKey: sdkaws.String("apeiro-cmk:tenant"), TagValue: sdkaws.String(bd.tenant)}},
	}
	switch req.GetKeyType() {
	case operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED:
	case operationsv1.KeyType_KEY_TYPE_BYOK:
		if spec != kmstypes.KeySpecSymmetricDefault {
			return nil, invalidArg("algorithm", "AWS KMS imports only symmetric (AES256) key material for encryption keys")
		}
		in.Origin = kmstypes.OriginTypeExternal
	case operationsv1.KeyType_KEY_TYPE_HYOK:
		return nil, invalidArg("keyType", "HYOK keys are held in the customer's AWS account; name an existing key instead of creating one")
	default:
		return nil, invalidArg("keyType", "key_type is required (SYSTEM_MANAGED or BYOK)")
	}
	var alias string
	if req.Id != nil {
		alias = "alias/" + strings.TrimSpace(req.GetId())
		if !aliasNameRE.MatchString(alias) || strings.HasPrefix(alias, "alias/aws/") {
			return nil, invalidArg("id", "id %q cannot be a KMS alias name ([A-Za-z0-9/_-], not aws/…)", truncate(req.GetId()))
		}
	}
	region := req.GetRegion()
	if region == "" {
		region = bd.region
	}
	if region == "" {
		region = b.cfg.defaultRegion()
	}
	if !b.cfg.regionAllowed(region) {
		return nil, invalidArg("region", "region %q is not an allowed AWS region", truncate(region))
	}
	c, err := b.tenantKMS(bd.role, region, bd.tenant)
	if err != nil {
		return nil, err
	}
	out, err := c.CreateKey(ctx, in)
	if err != nil {
		return nil, mapAWS(ctx, "CreateKey", err)
	}
	md := out.KeyMetadata
	if md == nil || md.Arn == nil {
		return nil, &Error{SDK: kserrors.StatusKeyGenericErr, Msg: "CreateKey returned no key metadata"}
	}
	if alias != "" {
		if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: sdkaws.String(alias), TargetKeyId: md.KeyId}); err != nil {
			e := mapAWS(ctx, "CreateAlias "+alias, err)
			_, derr := c.ScheduleKeyDeletion(context.WithoutCancel(ctx), &kms.ScheduleKeyDeletionInput{KeyId: md.KeyId, PendingWindowInDays: sdkaws.Int32(minDeletionWindowDays)})
			if derr != nil {
				e.Msg += fmt.Sprintf("; the new key %s could not be scheduled for deletion (%v): delete it manually", sdkaws.ToString(md.Arn), derr)
			} else {
				e.Msg += fmt.Sprintf("; the new key %s was scheduled for deletion", sdkaws.ToString(md.Arn))
			}
			return nil, e
		}
	}
	return &operationsv1.CreateKeyResponse{KeyId: sdkaws.ToString(md.Arn), Status: stateName(md.KeyState)}, nil
}

// DeleteKey schedules deletion after window days (KMS allows 7..30; default defaultDeletionWindowDays). A key
// already pending deletion is left as it is.
func (o *Operations) DeleteKey(ctx context.Context, req *operationsv1.DeleteKeyRequest) (*operationsv1.DeleteKeyResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	window, err := ksop.DeletionWindow(req, b.cfg.deletionWindow(), minDeletionWindowDays, maxDeletionWindowDays, " for AWS KMS", invalidArg)
	if err != nil {
		return nil, grpcErr(err)
	}
	c, k, err := b.keyOf(req.GetParameters())
	if err != nil {
		return nil, grpcErr(err)
	}
	kid, err := b.stateKeyID(ctx, c, k)
	if err != nil {
		return nil, grpcErr(err)
	}
	_, err = c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: sdkaws.String(kid), PendingWindowInDays: sdkaws.Int32(window)})
	if err != nil {
		var st *kmstypes.KMSInvalidStateException
		if errors.As(err, &st) {
			if md, derr := b.describe(ctx, c, k); derr == nil && md.KeyState == kmstypes.KeyStatePendingDeletion {
				return &operationsv1.DeleteKeyResponse{}, nil
			}
		}
		return nil, grpcErr(mapAWS(ctx, "ScheduleKeyDeletion", err))
	}
	return &operationsv1.DeleteKeyResponse{}, nil
}

// EnableKey enables a disabled key. A key pending deletion or import cannot be enabled (FailedPrecondition).
func (o *Operations) EnableKey(ctx context.Context, req *operationsv1.EnableKeyRequest) (*operationsv1.EnableKeyResponse, error) {
	b := o.backend()
	err := b.simple(ctx, req.GetParameters(), "EnableKey", func(ctx context.Context, c kmsAPI, id *string) error {
		// KMS refuses to enable a key pending deletion or import; asking first gives that answer (and the state)
		// from every KMS endpoint, emulators included.
		md, err := b.describe(ctx, c, KeyRef{Raw: *id})
		if err != nil {
			return err
		}
		if md.KeyState != kmstypes.KeyStateEnabled && md.KeyState != kmstypes.KeyStateDisabled {
			return failedPrecondition(keychain.ErrKeyDisabled, "key %s is %s and cannot be enabled", sdkaws.ToString(md.Arn), stateName(md.KeyState))
		}
		_, err = c.EnableKey(ctx, &kms.EnableKeyInput{KeyId: id})
		return err
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	return &operationsv1.EnableKeyResponse{}, nil
}

// DisableKey disables an enabled key.
func (o *Operations) DisableKey(ctx context.Context, req *operationsv1.DisableKeyRequest) (*operationsv1.DisableKeyResponse, error) {
	err := o.backend().simple(ctx, req.GetParameters(), "DisableKey", func(ctx context.Context, c kmsAPI, id *string) error {
		_, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: id})
		return err
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	return &operationsv1.DisableKeyResponse{}, nil
}

func (b *backend) simple(ctx context.Context, p *operationsv1.RequestParameters, what string, call func(context.Context, kmsAPI, *string) error) error {
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	c, k, err := b.keyOf(p)
	if err != nil {
		return err
	}
	id, err := b.stateKeyID(ctx, c, k)
	if err != nil {
		return err
	}
	if err := call(ctx, c, sdkaws.String(id)); err != nil {
		return mapAWS(ctx, what+" "+truncate(k.Raw), err) // passes an *Error through unchanged
	}
	return nil
}

// stateKeyID is the key id to pass to the state-changing calls (EnableKey, DisableKey, ScheduleKeyDeletion), which
// take no aliases: an alias is resolved with DescribeKey; a key ARN, already checked to lie in the role's account
// and region, is reduced to its key id (moto resolves only bare ids in these calls; AWS accepts both).
func (b *backend) stateKeyID(ctx context.Context, c kmsAPI, k KeyRef) (string, error) {
	switch {
	case k.IsAlias():
		md, err := b.describe(ctx, c, k)
		if err != nil {
			return "", err
		}
		return sdkaws.ToString(md.KeyId), nil
	case k.IsARN:
		return k.ID, nil
	}
	return k.Raw, nil
}

// GetImportParameters fetches a wrapping key and import token for a BYOK key (KMS GetParametersForImport, RSA-4096
// wrapping key, RSAES_OAEP_SHA_256). CMK needs publicKey (PEM), wrappingAlgorithm, hashFunction, providerParams (a
// string: JSON of the import token and key ARN) and validTo.
func (o *Operations) GetImportParameters(ctx context.Context, req *operationsv1.GetImportParametersRequest) (*operationsv1.GetImportParametersResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	if a := req.GetAlgorithm(); a != operationsv1.KeyAlgorithm_KEY_ALGORITHM_UNSPECIFIED && a != operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256 {
		return nil, grpcErr(invalidArg("algorithm", "AWS KMS imports only AES256 key material, not %s", a))
	}
	c, md, err := b.describeKey(ctx, req.GetParameters())
	if err != nil {
		return nil, grpcErr(err)
	}
	if md.Origin != kmstypes.OriginTypeExternal {
		return nil, grpcErr(failedPrecondition(nil, "key %s has origin %s; only BYOK keys (origin EXTERNAL) take imported material", sdkaws.ToString(md.Arn), md.Origin))
	}
	out, err := c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{
		KeyId:             md.Arn,
		WrappingAlgorithm: kmstypes.AlgorithmSpecRsaesOaepSha256,
		WrappingKeySpec:   kmstypes.WrappingKeySpecRsa4096,
	})
	if err != nil {
		return nil, grpcErr(mapAWS(ctx, "GetParametersForImport", err))
	}
	pp := providerParams{
		ImportToken:       base64.StdEncoding.EncodeToString(out.ImportToken),
		KeyARN:            sdkaws.ToString(md.Arn),
		WrappingAlgorithm: string(kmstypes.AlgorithmSpecRsaesOaepSha256),
	}
	fields := map[string]any{
		ImportPublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: out.PublicKey})),
		// CMK's API names the mechanism in PKCS#11 terms: RSAES_OAEP_SHA_256 is CKM_RSA_PKCS_OAEP with SHA-256.
		ImportWrappingAlgorithm: WrappingMechanism,
		ImportHashFunction:      "SHA256",
	}
	if out.ParametersValidTo != nil {
		pp.ValidTo = out.ParametersValidTo.UTC().Format(time.RFC3339)
		fields[ImportValidTo] = pp.ValidTo
	}
	raw, _ := json.Marshal(pp)
	fields[ImportProviderParams] = string(raw)
	s, err := structpb.NewStruct(fields)
	if err != nil {
		return nil, grpcErr(&Error{Code: codes.Internal, Msg: "encoding import parameters: " + err.Error()})
	}
	return &operationsv1.GetImportParametersResponse{KeyId: sdkaws.ToString(md.Arn), ImportParameters: s}, nil
}

// maxImportTokenBytes / maxWrappedMaterialBytes bound what ImportKeyMaterial decodes.
const (
	maxProviderParamsBytes  = 64 << 10
	maxWrappedMaterialBytes = 8 << 10
)

// ImportKeyMaterial imports wrapped material into a BYOK key with the token from GetImportParameters. CMK sends back
// only {providerParams[, algorithm]}; encrypted_key_material is base64 of the RSAES_OAEP_SHA_256-wrapped key.
func (o *Operations) ImportKeyMaterial(ctx context.Context, req *operationsv1.ImportKeyMaterialRequest) (*operationsv1.ImportKeyMaterialResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	pp, err := parseProviderParams(req.GetImportParameters())
	if err != nil {
		return nil, grpcErr(err)
	}
	material, err := decodeMaterial(req.GetEncryptedKeyMaterial())
	if err != nil {
		return nil, grpcErr(err)
	}
	c, md, err := b.describeKey(ctx, req.GetParameters())
	if err != nil {
		return nil, grpcErr(err)
	}
	if pp.KeyARN != "" && pp.KeyARN != sdkaws.ToString(md.Arn) {
		return nil, grpcErr(invalidArg(ImportProviderParams, "import parameters belong to key %s, not %s", truncate(pp.KeyARN), sdkaws.ToString(md.Arn)))
	}
	token, _ := base64.StdEncoding.DecodeString(pp.ImportToken)
	_, err = c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{
		KeyId:                md.Arn,
		ImportToken:          token,
		EncryptedKeyMaterial: material,
		ExpirationModel:      kmstypes.ExpirationModelTypeKeyMaterialDoesNotExpire,
	})
	if err != nil {
		return nil, grpcErr(mapAWS(ctx, "ImportKeyMaterial", err))
	}
	return &operationsv1.ImportKeyMaterialResponse{}, nil
}

func parseProviderParams(s *structpb.Struct) (*providerParams, error) {
	raw := str(s, ImportProviderParams)
	if raw == "" {
		return nil, invalidArg(ImportProviderParams, "import_parameters.providerParams is required (from GetImportParameters)")
	}
	if len(raw) > maxProviderParamsBytes {
		return nil, invalidArg(ImportProviderParams, "import_parameters.providerParams is larger than %d bytes", maxProviderParamsBytes)
	}
	var pp providerParams
	if err := json.Unmarshal([]byte(raw), &pp); err != nil {
		return nil, invalidArg(ImportProviderParams, "import_parameters.providerParams is not the JSON GetImportParameters returned: %v", err)
	}
	tok, err := base64.StdEncoding.DecodeString(pp.ImportToken)
	if err != nil || len(tok) == 0 {
		return nil, invalidArg(ImportProviderParams, "import_parameters.providerParams.importToken is missing or not base64")
	}
	if pp.KeyARN != "" {
		if _, err := ParseKeyRef(pp.KeyARN); err != nil {
			return nil, invalidArg(ImportProviderParams, "import_parameters.providerParams.keyArn: %v", err)
		}
	}
	return &pp, nil
}

func decodeMaterial(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, invalidArg("encryptedKeyMaterial", "encrypted_key_material is required")
	}
	if len(s) > maxWrappedMaterialBytes*2 {
		return nil, invalidArg("encryptedKeyMaterial", "encrypted_key_material is larger than %d bytes", maxWrappedMaterialBytes)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) > 0 && len(b) <= maxWrappedMaterialBytes {
			return b, nil
		}
	}
	return nil, invalidArg("encryptedKeyMaterial", "encrypted_key_material must be base64 of the wrapped key material")
}

// ValidateKey checks key attributes without calling AWS: key type, algorithm, region, and (if given) that the
// native key id is a KMS key ARN in that region.
func (o *Operations) ValidateKey(_ context.Context, req *operationsv1.ValidateKeyRequest) (*operationsv1.ValidateKeyResponse, error) {
	cfg := o.backend().cfg
	invalid := ksop.InvalidKey
	kt := req.GetKeyType()
	switch kt {
	case operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED, operationsv1.KeyType_KEY_TYPE_BYOK, operationsv1.KeyType_KEY_TYPE_HYOK:
	default:
		return invalid("key type must be specified")
	}
	if _, ok := keySpecOf(req.GetAlgorithm()); !ok {
		return invalid("algorithm: unsupported key algorithm %s (AES256, RSA3072, RSA4096)", req.GetAlgorithm())
	}
	if kt == operationsv1.KeyType_KEY_TYPE_BYOK && req.GetAlgorithm() != operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256 {
		return invalid("algorithm: AWS KMS imports only AES256 key material")
	}
	region := req.GetRegion()
	if region != "" && !cfg.regionAllowed(region) {
		return invalid("region: %q is not an allowed AWS region", truncate(region))
	}
	if id := req.GetNativeKeyId(); id != "" {
		k, err := ParseKeyRef(id)
		if err != nil {
			return invalid("native key id: %v", err)
		}
		if kt == operationsv1.KeyType_KEY_TYPE_HYOK && !k.IsARN {
			return invalid("native key id: a HYOK key must be named by its KMS key ARN")
		}
		if k.IsARN && region != "" && k.Region != region {
			return invalid("native key id is in region %s, not %s", k.Region, region)
		}
		if k.IsARN && !cfg.regionAllowed(k.Region) {
			return invalid("native key id: region %s is not an allowed AWS region", k.Region)
		}
	} else if kt == operationsv1.KeyType_KEY_TYPE_HYOK {
		return invalid("native key id: a HYOK key must be named by its KMS key ARN")
	}
	return ksop.ValidKey()
}

// ValidateKeyAccessData checks the management access data (the binding rules, then a real AssumeRole of the
// tenant's role) and that every crypto entry is an object whose roleArn/tenant, if given, obey the same rules.
// Problems are is_valid=false with a message naming the field.
func (o *Operations) ValidateKeyAccessData(ctx context.Context, req *operationsv1.ValidateKeyAccessDataRequest) (*operationsv1.ValidateKeyAccessDataResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	bad := ksop.InvalidAccessData
	bd, err := b.bind(req.GetManagement())
	if err != nil {
		return bad("management: " + err.Error())
	}
	region := bd.region
	if region == "" {
		region = b.cfg.defaultRegion()
	}
	tc, err := b.tenantClient(bd.role, region, bd.tenant)
	if err != nil {
		return bad("management: " + err.Error())
	}
	if _, err := tc.creds.Retrieve(ctx); err != nil {
		return bad("management: " + mapAWS(ctx, "assuming role "+bd.role.String(), err).Error())
	}
	var problems []string
	for r, v := range req.GetCrypto().GetFields() {
		s := v.GetStructValue()
		if s == nil {
			problems = append(problems, fmt.Sprintf("crypto[%s]: must be an object", r))
			continue
		}
		if err := refuseStaticInStruct(s, "crypto["+r+"]"); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if str(s, FieldRoleARN) == "" && str(s, FieldTenant) == "" {
			continue // inherits the management binding
		}
		cb, err := b.bind(s)
		if err != nil {
			problems = append(problems, fmt.Sprintf("crypto[%s]: %v", r, err))
			continue
		}
		if cb.tenant != bd.tenant {
			problems = append(problems, fmt.Sprintf("crypto[%s]: tenant %q differs from the management tenant %q", r, cb.tenant, bd.tenant))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return bad(strings.Join(problems, "; "))
	}
	return ksop.ValidAccessData()
}

// CryptoAccessData is what TransformCryptoAccessData emits per region, as JSON: what a crypto-layer client needs to
// reach the key through IRSA (the key ARN and the tenant-bound role), never credentials.
type CryptoAccessData struct {
	KeyARN     string `json:"keyArn"`
	Region     string `json:"region"`
	RoleARN    string `json:"roleArn,omitempty"`
	ExternalID string `json:"externalId,omitempty"`
	Subject    string `json:"subject,omitempty"`
}

// TransformCryptoAccessData turns CMK's JSON map region → access data into region → CryptoAccessData JSON, keyed by
// exactly the input's regions.
func (o *Operations) TransformCryptoAccessData(_ context.Context, req *operationsv1.TransformCryptoAccessDataRequest) (*operationsv1.TransformCryptoAccessDataResponse, error) {
	id, k, in, err := ksop.TransformInput(req, ParseKeyRef)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(in))
	for region, v := range in {
		if p := findStaticKey(map[string]any(v), ""); p != "" {
			return nil, status.Errorf(codes.InvalidArgument, "access_data[%s]: %q: %v", region, p, ErrStaticCredentials)
		}
		s := func(key string) string { x, _ := v[key].(string); return x }
		role, tenant := s(FieldRoleARN), s(FieldTenant)
		if role != "" {
			ra, err := ParseRoleARN(role)
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "access_data[%s].roleArn: %v", region, err)
			}
			if k.IsARN && ra.Account != k.Account {
				return nil, status.Errorf(codes.InvalidArgument, "access_data[%s].roleArn: role account %s differs from the key's account %s", region, ra.Account, k.Account)
			}
		}
		b, _ := json.Marshal(CryptoAccessData{KeyARN: id, Region: region, RoleARN: role, ExternalID: tenant, Subject: ksop.CryptoSubject(v)})
		out[region] = b
	}
	return &operationsv1.TransformCryptoAccessDataResponse{TransformedAccessData: out}, nil
}

// ExtractKeyRegion reads the region from a key ARN; a bare key id or alias is looked up with the management access
// data (DescribeKey through the tenant's role) in the access data's region.
func (o *Operations) ExtractKeyRegion(ctx context.Context, req *operationsv1.ExtractKeyRegionRequest) (*operationsv1.ExtractKeyRegionResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	k, err := ParseKeyRef(req.GetNativeKeyId())
	if err != nil {
		return nil, grpcErr(invalidArg("nativeKeyId", "native_key_id: %v", err))
	}
	if k.IsARN {
		return &operationsv1.ExtractKeyRegionResponse{Region: k.Region}, nil
	}
	if req.GetManagementAccessData() == nil {
		return nil, grpcErr(invalidArg("nativeKeyId", "cannot derive a region from key id %q without management access data", truncate(k.Raw)))
	}
	c, kr, _, err := b.keyClient(req.GetManagementAccessData(), k.Raw)
	if err != nil {
		return nil, grpcErr(err)
	}
	md, err := b.describe(ctx, c, kr)
	if err != nil {
		return nil, grpcErr(err)
	}
	full, err := ParseKeyRef(sdkaws.ToString(md.Arn))
	if err != nil {
		return nil, grpcErr(&Error{SDK: kserrors.StatusKeyGenericErr, Msg: "KMS returned an unparsable key ARN: " + err.Error()})
	}
	return &operationsv1.ExtractKeyRegionResponse{Region: full.Region}, nil
}
