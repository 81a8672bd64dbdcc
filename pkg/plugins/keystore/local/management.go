package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
)

const (
	kindMeta     = "meta"
	kindTrusts   = "trusts"
	metaInstance = "instance"
	metaDeleted  = "deleted"
)

// CommonNamePrefix prefixes the common name CreateKeystore reports.
const CommonNamePrefix = "apeiro-local-keystore-"

// Management is the KeystoreProvider plugin.
type Management struct {
	managementv1.UnimplementedKeystoreProviderServer
	configv1.UnimplementedConfigServer

	*base
}

// NewManagement returns a management plugin with the empty configuration.
func NewManagement() *Management { return &Management{base: newBase("management")} }

// Configure implements configv1.ConfigServer. The YAML may carry CMK's
// injected `supportedregions`.
func (m *Management) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	if err := m.configure(req.GetYamlConfiguration()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &configv1.ConfigureResponse{BuildInfo: buildInfo("KeystoreProvider")}, nil
}

// Close implements io.Closer.
func (m *Management) Close() error { return nil }

type instanceMeta struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"createdAt"`
}

type trustRecord struct {
	ID        string    `json:"id"`
	Subject   string    `json:"subject"`
	Region    string    `json:"region"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"createdAt"`
}

func accessData(be *backend, role, inst string) *commonv1.KeystoreInstanceConfig {
	s, _ := structpb.NewStruct(map[string]any{
		FieldInstanceID: inst,
		FieldAccessKey:  AccessKey(be.secret, role, inst),
	})
	return &commonv1.KeystoreInstanceConfig{Values: s}
}

// CreateKeystore creates a keystore instance (CMK calls it with empty
// values from its keystore pool task) and returns the access data of its
// management role and of key management, plus the supported regions.
func (m *Management) CreateKeystore(_ context.Context, _ *managementv1.CreateKeystoreRequest) (*managementv1.CreateKeystoreResponse, error) {
	be := m.backend()
	regions, err := be.cfg.supportedRegions()
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "supported regions: %v", err)
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	inst := "lks-" + hex.EncodeToString(b)
	meta, _ := json.Marshal(instanceMeta{ID: inst, CreatedAt: m.now().UTC()})
	if err := be.st.put(kindMeta, inst, metaInstance, meta, true); err != nil {
		return nil, internalErr("recording keystore", err)
	}
	locality := be.cfg.defaultRegion()
	if len(regions) > 0 {
		locality = regions[0].TechnicalName
		if locality == "" {
			locality = regions[0].Name
		}
	}
	resp := &managementv1.CreateKeystoreResponse{
		RoleManagementConfig: &managementv1.ManagementConfig{
			LocalityId: locality, CommonName: CommonNamePrefix + inst, AccessData: accessData(be, roleManagement, inst),
		},
		KeyManagementConfig: &managementv1.ManagementConfig{
			LocalityId: locality, CommonName: CommonNamePrefix + inst, AccessData: accessData(be, roleKeys, inst),
		},
	}
	for _, r := range regions {
		resp.SupportedRegions = append(resp.SupportedRegions, &managementv1.SupportedRegion{Name: r.Name, TechnicalName: r.TechnicalName})
	}
	return resp, nil
}

func (m *Management) authManagement(cfg *commonv1.KeystoreInstanceConfig) (*backend, string, error) {
	be := m.backend()
	inst, err := authenticate(cfg.GetValues(), be.secret, roleManagement)
	if err != nil {
		return nil, "", err
	}
	return be, inst, nil
}

// DeleteKeystore removes the instance with its trusts (and, when the
// operations plugin shares the directory, its keys) and leaves a tombstone
// so the instance's access data stops working. Idempotent.
func (m *Management) DeleteKeystore(_ context.Context, req *managementv1.DeleteKeystoreRequest) (*managementv1.DeleteKeystoreResponse, error) {
	be, inst, err := m.authManagement(req.GetConfig())
	if err != nil {
		return nil, err
	}
	// Tombstone first: from here on every request with this instance's access data is refused, so no key can be
	// created between the removal and the tombstone. The instance's meta records (with the tombstone) stay.
	tomb, _ := json.Marshal(map[string]any{"deletedAt": m.now().UTC()})
	if err := be.st.put(kindMeta, inst, metaDeleted, tomb, false); err != nil {
		return nil, internalErr("deleting keystore", err)
	}
	if err := be.st.removeInstance(inst, kindMeta); err != nil {
		return nil, internalErr("deleting keystore", err)
	}
	return &managementv1.DeleteKeystoreResponse{}, nil
}

// GrantTrust records trust in a certificate subject for a management or
// crypto role and returns the trust's access data.
func (m *Management) GrantTrust(_ context.Context, req *managementv1.GrantTrustRequest) (*managementv1.GrantTrustResponse, error) {
	be, inst, err := m.authManagement(req.GetConfig())
	if err != nil {
		return nil, err
	}
	if _, err := be.st.get(kindMeta, inst, metaDeleted); err == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "keystore %q was deleted", inst)
	}
	subject := strings.TrimSpace(req.GetSubject())
	if subject == "" {
		return nil, status.Error(codes.InvalidArgument, "subject is required")
	}
	var typ string
	switch req.GetType() {
	case managementv1.TrustType_TRUST_TYPE_MANAGEMENT:
		typ = "MANAGEMENT"
	case managementv1.TrustType_TRUST_TYPE_CRYPTO:
		typ = "CRYPTO"
	default:
		return nil, status.Error(codes.InvalidArgument, "trust type must be MANAGEMENT or CRYPTO")
	}
	region := strings.TrimSpace(req.GetRegion())
	if region == "" {
		region = be.cfg.defaultRegion()
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	tr := trustRecord{ID: "trust-" + hex.EncodeToString(b), Subject: subject, Region: region, Type: typ, CreatedAt: m.now().UTC()}
	raw, _ := json.Marshal(tr)
	if err := be.st.put(kindTrusts, inst, tr.ID, raw, true); err != nil {
		return nil, internalErr("recording trust", err)
	}
	fields := map[string]any{
		FieldInstanceID: inst, FieldTrustID: tr.ID, FieldSubject: subject, FieldRegion: region, FieldTrustType: typ,
	}
	if typ == "MANAGEMENT" {
		// CMK stores a MANAGEMENT trust's access data as the keystore's
		// keyManagementConfig and sends it with every key operation (when
		// CreateKeystore returned no key-management locality), so it must
		// authenticate the key-management role.
		fields[FieldAccessKey] = AccessKey(be.secret, roleKeys, inst)
	}
	ad, err := structpb.NewStruct(fields)
	if err != nil {
		return nil, internalErr("encoding access data", err)
	}
	return &managementv1.GrantTrustResponse{AccessData: ad}, nil
}

// RemoveTrust removes a trust by the access data GrantTrust returned.
// Unknown trust → NotFound.
func (m *Management) RemoveTrust(_ context.Context, req *managementv1.RemoveTrustRequest) (*managementv1.RemoveTrustResponse, error) {
	be, inst, err := m.authManagement(req.GetConfig())
	if err != nil {
		return nil, err
	}
	id := stringField(req.GetAccessData(), FieldTrustID)
	if id == "" {
		return nil, missingFields(FieldTrustID)
	}
	if other := stringField(req.GetAccessData(), FieldInstanceID); other != "" && other != inst {
		return nil, status.Error(codes.PermissionDenied, "trust belongs to another keystore instance")
	}
	if _, err := be.st.get(kindTrusts, inst, id); err != nil {
		if errors.Is(err, errNotFound) {
			return nil, status.Errorf(codes.NotFound, "trust %q not found", id)
		}
		return nil, internalErr("reading trust", err)
	}
	if err := be.st.remove(kindTrusts, inst, id); err != nil {
		return nil, internalErr("removing trust", err)
	}
	return &managementv1.RemoveTrustResponse{}, nil
}
