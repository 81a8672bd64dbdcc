package openbao

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	bao "github.com/openbao/openbao/api/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keyversions"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/ksop"
)

// Operations is the KeystoreInstanceKeyOperation plugin.
type Operations struct {
	operationsv1.UnimplementedKeystoreInstanceKeyOperationServer
	ksop.Host[*Config, backend] // Configure, Close and the current backend
}

// NewOperations returns an operations plugin with the empty configuration (nothing contacted until the first call).
func NewOperations() *Operations {
	o := &Operations{}
	o.Init("openbao", ksop.Operations, ParseConfig, newBackend)
	return o
}

func (o *Operations) backend() *backend { return o.Load() }

// keyRef binds the request's access data and checks the key name.
func (b *backend) keyRef(p *operationsv1.RequestParameters) (*binding, string, error) {
	bd, err := b.bind(p.GetConfig().GetValues())
	if err != nil {
		return nil, "", err
	}
	id := strings.TrimSpace(p.GetKeyId())
	if id == "" {
		return nil, "", invalidArg("keyId", "key_id is required")
	}
	if err := checkKeyName(id); err != nil {
		return nil, "", err
	}
	return bd, id, nil
}

// lookup returns the mount state and key, purging a key whose deletion window has passed.
func (b *backend) lookup(ctx context.Context, p *operationsv1.RequestParameters) (*binding, *mountState, *transitKey, error) {
	bd, name, err := b.keyRef(p)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := b.readState(ctx, bd)
	if err != nil {
		return nil, nil, nil, err
	}
	if purged, err := b.purgeIfDue(ctx, bd, st, name); err != nil {
		return nil, nil, nil, err
	} else if purged {
		return nil, nil, nil, notFound(bd.mount, name)
	}
	k, err := b.readKey(ctx, bd, name)
	if err != nil {
		if e, ok := err.(*Error); ok && e.SDK == kserrors.StatusKeyNotFound && st.Byok[name] != nil {
			return bd, st, pendingKey(name, st.Byok[name]), nil
		}
		return nil, nil, nil, err
	}
	return bd, st, k, nil
}

// GetKey reads the transit key: type, state, latest version.
func (o *Operations) GetKey(ctx context.Context, req *operationsv1.GetKeyRequest) (*operationsv1.GetKeyResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	_, st, k, err := b.lookup(ctx, req.GetParameters())
	if err != nil {
		return nil, grpcErr(err)
	}
	s := statusOf(st, k)
	resp := &operationsv1.GetKeyResponse{KeyId: k.Name, Algorithm: algorithmOf(k.Type), Status: s, Usage: "ENCRYPT_DECRYPT"}
	if vs := versions(k, s); len(vs) > 0 {
		resp.LatestKeyVersionId = vs[len(vs)-1].VersionId
		resp.LatestRotationTime = vs[len(vs)-1].CreationTime
	}
	return resp, nil
}

// GetKeyVersions lists the key's transit versions (min_decryption_version..latest_version) oldest first.
func (o *Operations) GetKeyVersions(ctx context.Context, req *keyversions.GetKeyVersionsRequest) (*keyversions.GetKeyVersionsResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	_, st, k, err := b.lookup(ctx, req.GetParameters())
	if err != nil {
		return nil, grpcErr(err)
	}
	return &keyversions.GetKeyVersionsResponse{Versions: versions(k, statusOf(st, k))}, nil
}

// CreateKey creates a SYSTEM_MANAGED transit key in the tenant's mount (OpenBao generates the material). An id
// names the key; an existing key of that name is never adopted (AlreadyExists). One write creates the key, so a
// failure leaves either nothing or a complete key.
func (o *Operations) CreateKey(ctx context.Context, req *operationsv1.CreateKeyRequest) (*operationsv1.CreateKeyResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	resp, err := b.createKey(ctx, req)
	return resp, grpcErr(err)
}

func (b *backend) createKey(ctx context.Context, req *operationsv1.CreateKeyRequest) (*operationsv1.CreateKeyResponse, error) {
	bd, err := b.bind(req.GetConfig().GetValues())
	if err != nil {
		return nil, err
	}
	typ, ok := keyTypeOf(req.GetAlgorithm())
	if !ok {
		return nil, invalidArg("algorithm", "unsupported key algorithm %s (AES256, RSA3072, RSA4096)", req.GetAlgorithm())
	}
	switch req.GetKeyType() {
	case operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED, operationsv1.KeyType_KEY_TYPE_BYOK:
	case operationsv1.KeyType_KEY_TYPE_HYOK:
		return nil, invalidArg("keyType", "HYOK keys are not created by the platform")
	default:
		return nil, invalidArg("keyType", "key_type is required (SYSTEM_MANAGED or BYOK)")
	}
	if r := req.GetRegion(); r != "" && r != b.cfg.Region {
		return nil, invalidArg("region", "region %q is not this OpenBao keystore's region %q", trunc(r), b.cfg.Region)
	}
	name := strings.TrimSpace(req.GetId())
	if name == "" {
		rnd := make([]byte, 8)
		_, _ = rand.Read(rnd)
		name = "k-" + hex.EncodeToString(rnd)
	}
	if err := checkKeyName(name); err != nil {
		return nil, err
	}
	st, err := b.readState(ctx, bd)
	if err != nil {
		return nil, err
	}
	if st.Byok[name] != nil {
		return nil, &Error{Code: codes.AlreadyExists, Field: "id", Msg: fmt.Sprintf("BYOK key %q already exists in mount %s (waiting for key material)", name, bd.mount)}
	}
	if _, err := b.readKey(ctx, bd, name); err == nil {
		return nil, &Error{Code: codes.AlreadyExists, Field: "id", Msg: fmt.Sprintf("transit key %q already exists in mount %s", name, bd.mount)}
	} else if e, ok := err.(*Error); !ok || e.SDK != kserrors.StatusKeyNotFound {
		return nil, err
	}
	if req.GetKeyType() == operationsv1.KeyType_KEY_TYPE_BYOK {
		return b.createBYOK(ctx, bd, name, typ)
	}
	if _, err := b.do(ctx, bd, "creating key "+bd.mount+"/"+name, func(l logical) (*bao.Secret, error) {
		return l.WriteWithContext(ctx, bd.mount+"/keys/"+name, map[string]any{"type": typ})
	}); err != nil {
		return nil, err
	}
	return &operationsv1.CreateKeyResponse{KeyId: name, Status: StateEnabled}, nil
}

// DeleteKey schedules deletion: the key is disabled at once, deletion_allowed is set on the transit key, and the
// key is deleted for good on the first access after the window (days; 0 deletes now). Deleting a key pending
// deletion is a no-op.
func (o *Operations) DeleteKey(ctx context.Context, req *operationsv1.DeleteKeyRequest) (*operationsv1.DeleteKeyResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	window, err := ksop.DeletionWindow(req, b.cfg.deletionWindow(), 0, maxDeletionWindowDays, "", invalidArg)
	if err != nil {
		return nil, grpcErr(err)
	}
	bd, st, k, err := b.lookup(ctx, req.GetParameters())
	if err != nil {
		return nil, grpcErr(err)
	}
	if _, ok := st.Pending[k.Name]; ok {
		return &operationsv1.DeleteKeyResponse{}, nil
	}
	if k.PendingImport {
		// No material, nothing on the server and nothing encrypted under it: the record goes at once.
		if err := b.updateState(ctx, bd, func(s *mountState) error { delete(s.Byok, k.Name); return nil }); err != nil {
			return nil, grpcErr(err)
		}
		return &operationsv1.DeleteKeyResponse{}, nil
	}
	if _, err := b.do(ctx, bd, "allowing deletion of "+bd.mount+"/"+k.Name, func(l logical) (*bao.Secret, error) {
		return l.WriteWithContext(ctx, bd.mount+"/keys/"+k.Name+"/config", map[string]any{"deletion_allowed": true})
	}); err != nil {
		return nil, grpcErr(err)
	}
	due := b.now().Unix() + int64(window)*86400
	if err := b.updateState(ctx, bd, func(s *mountState) error {
		if s.Pending == nil {
			s.Pending = map[string]int64{}
		}
		s.Pending[k.Name] = due
		return nil
	}); err != nil {
		return nil, grpcErr(err)
	}
	if window == 0 {
		st.Pending = map[string]int64{k.Name: due}
		if _, err := b.purgeIfDue(ctx, bd, st, k.Name); err != nil {
			return nil, grpcErr(err)
		}
	}
	return &operationsv1.DeleteKeyResponse{}, nil
}

// EnableKey re-enables a disabled key; a key pending deletion cannot be enabled.
func (o *Operations) EnableKey(ctx context.Context, req *operationsv1.EnableKeyRequest) (*operationsv1.EnableKeyResponse, error) {
	return &operationsv1.EnableKeyResponse{}, grpcErr(o.setEnabled(ctx, req.GetParameters(), true))
}

// DisableKey disables a key: Wrap and Unwrap refuse it until EnableKey (transit itself has no disabled state; the
// plugin keeps it in the mount's state).
func (o *Operations) DisableKey(ctx context.Context, req *operationsv1.DisableKeyRequest) (*operationsv1.DisableKeyResponse, error) {
	return &operationsv1.DisableKeyResponse{}, grpcErr(o.setEnabled(ctx, req.GetParameters(), false))
}

func (o *Operations) setEnabled(ctx context.Context, p *operationsv1.RequestParameters, on bool) error {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	bd, st, k, err := b.lookup(ctx, p)
	if err != nil {
		return err
	}
	if _, ok := st.Pending[k.Name]; ok {
		return disabledErr("key %s/%s is pending deletion and cannot be %s", bd.mount, k.Name, map[bool]string{true: "enabled", false: "disabled"}[on])
	}
	if k.PendingImport {
		return &Error{Code: codes.FailedPrecondition, Field: "keyId", Msg: fmt.Sprintf("key %s/%s is waiting for its key material (ImportKeyMaterial)", bd.mount, k.Name)}
	}
	return b.updateState(ctx, bd, func(s *mountState) error {
		s.setDisabled(k.Name, !on)
		return nil
	})
}

// ValidateKey checks key attributes without calling the server.
func (o *Operations) ValidateKey(_ context.Context, req *operationsv1.ValidateKeyRequest) (*operationsv1.ValidateKeyResponse, error) {
	cfg := o.backend().cfg
	bad := ksop.InvalidKey
	if kt := req.GetKeyType(); kt != operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED && kt != operationsv1.KeyType_KEY_TYPE_BYOK {
		return bad("key type: only SYSTEM_MANAGED and BYOK keys are supported by the OpenBao keystore")
	}
	if _, ok := keyTypeOf(req.GetAlgorithm()); !ok {
		return bad("algorithm: unsupported key algorithm %s (AES256, RSA3072, RSA4096)", req.GetAlgorithm())
	}
	if r := req.GetRegion(); r != "" && r != cfg.Region {
		return bad("region: %q is not this OpenBao keystore's region %q", trunc(r), cfg.Region)
	}
	if id := req.GetNativeKeyId(); id != "" && !keyRE.MatchString(id) {
		return bad("native key id %q is not a transit key name", trunc(id))
	}
	return ksop.ValidKey()
}

// ValidateKeyAccessData checks that the management access data names an existing keystore mount of its tenant, and
// that every crypto entry names the same tenant (or none).
func (o *Operations) ValidateKeyAccessData(ctx context.Context, req *operationsv1.ValidateKeyAccessDataRequest) (*operationsv1.ValidateKeyAccessDataResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	bd, err := b.bind(req.GetManagement())
	if err != nil {
		return ksop.InvalidAccessData("management: " + err.Error())
	}
	if _, err := b.readState(ctx, bd); err != nil {
		return ksop.InvalidAccessData("management: " + err.Error())
	}
	if p := ksop.CryptoProblem(req.GetCrypto(), FieldTenant, bd.tenant, trunc, func(r string, s *structpb.Struct) string {
		if m := str(s, FieldMount); m != "" && strings.Trim(m, "/") != bd.mount {
			return fmt.Sprintf("crypto[%s]: mount %q is not the tenant's mount %s", r, trunc(m), bd.mount)
		}
		return ""
	}); p != "" {
		return ksop.InvalidAccessData(p)
	}
	return ksop.ValidAccessData()
}

// CryptoAccessData is what TransformCryptoAccessData emits per region: where a crypto-layer client finds the key
// (address, mount, key name), never a token.
type CryptoAccessData struct {
	Address string `json:"address,omitempty"`
	Mount   string `json:"mount,omitempty"`
	Key     string `json:"key"`
	Tenant  string `json:"tenant,omitempty"`
	Subject string `json:"subject,omitempty"`
}

// TransformCryptoAccessData maps CMK's region → access data JSON onto region → CryptoAccessData JSON.
func (o *Operations) TransformCryptoAccessData(_ context.Context, req *operationsv1.TransformCryptoAccessDataRequest) (*operationsv1.TransformCryptoAccessDataResponse, error) {
	b := o.backend()
	id, _, in, err := ksop.TransformInput(req, func(id string) (struct{}, error) { return struct{}{}, checkKeyName(id) })
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(in))
	for region, v := range in {
		if _, bad := v["token"]; bad {
			return nil, status.Errorf(codes.InvalidArgument, "access_data[%s].token: %v", region, ErrLongLivedToken)
		}
		tenant, _ := v[FieldTenant].(string)
		cd := CryptoAccessData{Address: b.cfg.Address, Key: id, Tenant: tenant, Subject: ksop.CryptoSubject(v)}
		if cd.Tenant != "" {
			if !tenantRE.MatchString(cd.Tenant) {
				return nil, status.Errorf(codes.InvalidArgument, "access_data[%s].tenant %q is not a tenant name", region, trunc(cd.Tenant))
			}
			cd.Mount = b.cfg.MountFor(cd.Tenant)
		}
		raw, _ := json.Marshal(cd)
		out[region] = raw
	}
	return &operationsv1.TransformCryptoAccessDataResponse{TransformedAccessData: out}, nil
}

// ExtractKeyRegion returns the keystore's configured region (an OpenBao cluster is one locality).
func (o *Operations) ExtractKeyRegion(_ context.Context, req *operationsv1.ExtractKeyRegionRequest) (*operationsv1.ExtractKeyRegionResponse, error) {
	if err := checkKeyName(strings.TrimSpace(req.GetNativeKeyId())); err != nil {
		return nil, grpcErr(err)
	}
	return &operationsv1.ExtractKeyRegionResponse{Region: o.backend().cfg.Region}, nil
}
