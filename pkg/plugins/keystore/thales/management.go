package thales

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/miekg/pkcs11"
	"google.golang.org/protobuf/types/known/structpb"

	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/ksop"
)

// trustApplication is the CKA_APPLICATION of the data objects that record trusted subjects on the token.
const trustApplication = "apeiro-cmk-trust"

// Management is the KeystoreProvider plugin. A keystore instance is a tenant name ("ks-<random>") on the
// configured token: its keys carry it in their CKA_ID like an Account's tenant, and its access data is
// {tenant, accessKey}, the same shape an Account's instance configuration gets from the Wrapper. GrantTrust records
// a trusted subject as a private data object on the token; RemoveTrust and DeleteKeystore destroy them.
type Management struct {
	managementv1.UnimplementedKeystoreProviderServer
	ksop.Host[*Config, backend] // Configure, Close and the current backend
}

// NewManagement returns a management plugin with the empty configuration.
func NewManagement() *Management {
	m := &Management{}
	m.Init("thales", ksop.Provider, ParseConfig, newBackend)
	return m
}

// IgnoredKeys implements ksop.Config.
func (c *Config) IgnoredKeys() keystoreconfig.Warnings { return c.warnings }

func configOf(values *structpb.Struct) *commonv1.KeystoreInstanceConfig {
	return &commonv1.KeystoreInstanceConfig{Values: values}
}

// CreateKeystore creates a keystore instance after proving the token answers and the PIN logs in.
func (m *Management) CreateKeystore(ctx context.Context, _ *managementv1.CreateKeystoreRequest) (*managementv1.CreateKeystoreResponse, error) {
	b := m.Load()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	regions, err := b.cfg.supportedRegions()
	if err != nil {
		return nil, grpcErr(invalidArg("supportedregions", "supportedregions: %v", err))
	}
	pl, label, err := b.token("")
	if err != nil {
		return nil, grpcErr(err)
	}
	if err := b.run(ctx, pl, "CreateKeystore", func(p11, pkcs11.SessionHandle) error { return nil }); err != nil {
		return nil, grpcErr(err)
	}
	secret, err := b.accessSecret()
	if err != nil {
		return nil, grpcErr(err)
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd)
	inst := "ks-" + hex.EncodeToString(rnd)
	access := map[string]any{FieldTenant: inst, FieldAccessKey: AccessKey(secret, inst)}
	return ksop.KeystoreResponse(regions, b.cfg.region(), "thales-"+label+"-"+inst, access), nil
}

type trustRecord struct {
	ID        string    `json:"id"`
	Subject   string    `json:"subject"`
	Region    string    `json:"region"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"createdAt"`
}

func trustLabel(tenant, id string) string { return "apeiro-cmk-trust:" + tenant + ":" + id }

// GrantTrust records a trusted certificate subject as a data object on the token.
func (m *Management) GrantTrust(ctx context.Context, req *managementv1.GrantTrustRequest) (*managementv1.GrantTrustResponse, error) {
	b := m.Load()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	tenant, err := b.bind(req.GetConfig().GetValues())
	if err != nil {
		return nil, grpcErr(err)
	}
	tr, err := ksop.ParseGrant(req, invalidArg)
	if err != nil {
		return nil, grpcErr(err)
	}
	if len(tr.Region) > 128 {
		return nil, grpcErr(invalidArg("region", "region is longer than 128 bytes"))
	}
	id := tr.ID
	rec, _ := json.Marshal(trustRecord{ID: id, Subject: tr.Subject, Region: tr.Region, Type: tr.Kind, CreatedAt: time.Now().UTC()})
	pl, _, err := b.token("")
	if err != nil {
		return nil, grpcErr(err)
	}
	err = b.run(ctx, pl, "GrantTrust", func(c p11, sh pkcs11.SessionHandle) error {
		if err := destroyData(c, sh, trustLabel(tenant, id)); err != nil {
			return err
		}
		_, err := createData(c, sh, trustLabel(tenant, id), rec)
		return err
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	ad, _ := structpb.NewStruct(map[string]any{FieldTenant: tenant, FieldTrustID: id, FieldTrustType: tr.Kind, FieldSubject: tr.Subject, FieldRegion: tr.Region})
	return &managementv1.GrantTrustResponse{AccessData: ad}, nil
}

// RemoveTrust destroys a subject recorded by GrantTrust (one that is gone already succeeds).
func (m *Management) RemoveTrust(ctx context.Context, req *managementv1.RemoveTrustRequest) (*managementv1.RemoveTrustResponse, error) {
	b := m.Load()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	tenant, err := b.bind(req.GetConfig().GetValues())
	if err != nil {
		return nil, grpcErr(err)
	}
	id, err := ksop.TrustID(req.GetAccessData(), accessDataErr, truncate)
	if err != nil {
		return nil, grpcErr(err)
	}
	if t := str(req.GetAccessData(), FieldTenant); t != "" && t != tenant {
		return nil, grpcErr(authErr(FieldTenant, "trust %s belongs to %q, not %q", id, truncate(t), tenant))
	}
	pl, _, err := b.token("")
	if err != nil {
		return nil, grpcErr(err)
	}
	if err := b.run(ctx, pl, "RemoveTrust", func(c p11, sh pkcs11.SessionHandle) error { return destroyData(c, sh, trustLabel(tenant, id)) }); err != nil {
		return nil, grpcErr(err)
	}
	return &managementv1.RemoveTrustResponse{}, nil
}

// DeleteKeystore destroys the instance's trust records. Keys stay on the token under their own lifecycle
// (DeleteKey), as an HSM partition outlives one CMK keystore record.
func (m *Management) DeleteKeystore(ctx context.Context, req *managementv1.DeleteKeystoreRequest) (*managementv1.DeleteKeystoreResponse, error) {
	b := m.Load()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	tenant, err := b.bind(req.GetConfig().GetValues())
	if err != nil {
		return nil, grpcErr(err)
	}
	pl, _, err := b.token("")
	if err != nil {
		return nil, grpcErr(err)
	}
	err = b.run(ctx, pl, "DeleteKeystore", func(c p11, sh pkcs11.SessionHandle) error {
		hs, err := findData(c, sh, nil)
		if err != nil {
			return err
		}
		prefix := trustLabel(tenant, "")
		for _, h := range hs {
			attrs, err := c.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil)})
			if err != nil {
				return err
			}
			if len(attrs) == 1 && strings.HasPrefix(string(attrs[0].Value), prefix) {
				if err := c.DestroyObject(sh, h); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	return &managementv1.DeleteKeystoreResponse{}, nil
}

func findData(c p11, sh pkcs11.SessionHandle, label *string) ([]pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA), pkcs11.NewAttribute(pkcs11.CKA_APPLICATION, trustApplication)}
	if label != nil {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, *label))
	}
	if err := c.FindObjectsInit(sh, tmpl); err != nil {
		return nil, err
	}
	defer func() { _ = c.FindObjectsFinal(sh) }()
	var out []pkcs11.ObjectHandle
	for range 64 { // bounded: 64 × 256 records
		hs, _, err := c.FindObjects(sh, 256)
		if err != nil {
			return nil, err
		}
		if len(hs) == 0 {
			break
		}
		out = append(out, hs...)
	}
	return out, nil
}

func destroyData(c p11, sh pkcs11.SessionHandle, label string) error {
	hs, err := findData(c, sh, &label)
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

func createData(c p11, sh pkcs11.SessionHandle, label string, value []byte) (pkcs11.ObjectHandle, error) {
	return c.CreateObject(sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true), pkcs11.NewAttribute(pkcs11.CKA_APPLICATION, trustApplication),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label), pkcs11.NewAttribute(pkcs11.CKA_VALUE, value),
	})
}
