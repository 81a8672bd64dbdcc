package openbao

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"

	bao "github.com/openbao/openbao/api/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/ksop"
)

// Management is the KeystoreProvider plugin: a keystore is a transit mount <mountPrefix>/<tenant>.
type Management struct {
	managementv1.UnimplementedKeystoreProviderServer
	ksop.Host[*Config, backend] // Configure, Close and the current backend
}

// NewManagement returns a management plugin with the empty configuration.
func NewManagement() *Management {
	m := &Management{}
	m.Init("openbao", ksop.Provider, ParseConfig, newBackend)
	return m
}

// IgnoredKeys implements ksop.Config.
func (c *Config) IgnoredKeys() keystoreconfig.Warnings { return c.warnings }

func (c *Config) supportedRegions() ([]keystoreconfig.Region, error) {
	if c.SupportedRegions == nil {
		return nil, nil
	}
	return keystoreconfig.ParseRegions(c.SupportedRegions)
}

// EnsureMount creates the transit mount of tenant if it does not exist (platform onboarding of a tenant; also what
// CreateKeystore does for a new keystore id). An existing mount of another owner is an error.
func (b *backend) EnsureMount(ctx context.Context, tenant string) (*binding, error) {
	bd, err := b.bind(structOf(map[string]any{FieldTenant: tenant}))
	if err != nil {
		return nil, err
	}
	if _, err := b.readState(ctx, bd); err == nil {
		return bd, nil
	} else if e, ok := err.(*Error); !ok || e.Field != FieldMount || !strings.Contains(e.Msg, "does not exist") {
		return nil, err
	}
	raw, _ := json.Marshal(&mountState{Apeiro: stateMarker, Tenant: tenant})
	if _, err := b.do(ctx, bd, "mounting transit at "+bd.mount, func(l logical) (*bao.Secret, error) {
		return l.WriteWithContext(ctx, "sys/mounts/"+bd.mount, map[string]any{"type": "transit", "description": string(raw)})
	}); err != nil {
		return nil, err
	}
	return bd, nil
}

func structOf(m map[string]any) *structpb.Struct {
	s, _ := structpb.NewStruct(m)
	return s
}

// CreateKeystore mounts a transit engine for a new keystore id. One write creates it, so a failure leaves nothing.
func (m *Management) CreateKeystore(ctx context.Context, _ *managementv1.CreateKeystoreRequest) (*managementv1.CreateKeystoreResponse, error) {
	b := m.Load()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	regions, err := b.cfg.supportedRegions()
	if err != nil {
		return nil, grpcErr(invalidArg("supportedregions", "supportedregions: %v", err))
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd)
	inst := "ks-" + hex.EncodeToString(rnd)
	bd, err := b.EnsureMount(ctx, inst)
	if err != nil {
		return nil, grpcErr(err)
	}
	return ksop.KeystoreResponse(regions, b.cfg.Region, inst, map[string]any{FieldTenant: bd.tenant, FieldMount: bd.mount}), nil
}

// GrantTrust records a trusted certificate subject in the keystore's state and returns access data naming it.
func (m *Management) GrantTrust(ctx context.Context, req *managementv1.GrantTrustRequest) (*managementv1.GrantTrustResponse, error) {
	b := m.Load()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	tr, err := ksop.ParseGrant(req, invalidArg)
	if err != nil {
		return nil, grpcErr(err)
	}
	bd, err := b.bind(req.GetConfig().GetValues())
	if err != nil {
		return nil, grpcErr(err)
	}
	if err := b.updateState(ctx, bd, func(st *mountState) error {
		if st.Trust == nil {
			st.Trust = map[string]string{}
		}
		st.Trust[tr.ID] = tr.Region
		return nil
	}); err != nil {
		return nil, grpcErr(err)
	}
	return &managementv1.GrantTrustResponse{AccessData: structOf(map[string]any{
		FieldTenant: bd.tenant, FieldMount: bd.mount, ksop.FieldTrustID: tr.ID, "trustType": tr.Kind, "subject": tr.Subject, "region": tr.Region,
	})}, nil
}

// RemoveTrust removes a trust record (removing one that is gone succeeds).
func (m *Management) RemoveTrust(ctx context.Context, req *managementv1.RemoveTrustRequest) (*managementv1.RemoveTrustResponse, error) {
	b := m.Load()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	bd, err := b.bind(req.GetConfig().GetValues())
	if err != nil {
		return nil, grpcErr(err)
	}
	id, err := ksop.TrustID(req.GetAccessData(), accessDataErr, trunc)
	if err != nil {
		return nil, grpcErr(err)
	}
	if t := str(req.GetAccessData(), FieldTenant); t != "" && t != bd.tenant {
		return nil, grpcErr(authErr(FieldTenant, "trust %s belongs to keystore %q, not %q", id, trunc(t), bd.tenant))
	}
	err = b.updateState(ctx, bd, func(st *mountState) error {
		delete(st.Trust, id)
		return nil
	})
	return &managementv1.RemoveTrustResponse{}, grpcErr(err)
}

// DeleteKeystore unmounts the keystore's transit engine, but only when it holds no keys: unmounting destroys every
// key in it at once, so keys must be deleted (with their windows) first.
func (m *Management) DeleteKeystore(ctx context.Context, req *managementv1.DeleteKeystoreRequest) (*managementv1.DeleteKeystoreResponse, error) {
	b := m.Load()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	bd, err := b.bind(req.GetConfig().GetValues())
	if err != nil {
		return nil, grpcErr(err)
	}
	if _, err := b.readState(ctx, bd); err != nil {
		return nil, grpcErr(err)
	}
	sec, err := b.do(ctx, bd, "listing keys of "+bd.mount, func(l logical) (*bao.Secret, error) {
		return l.ListWithContext(ctx, bd.mount+"/keys")
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	if sec != nil && sec.Data != nil {
		if ks, _ := sec.Data["keys"].([]any); len(ks) > 0 {
			return nil, grpcErr(&Error{Code: codes.FailedPrecondition, Msg: "keystore mount " + bd.mount + " still holds keys; delete them first (unmounting would destroy them)"})
		}
	}
	if _, err := b.do(ctx, bd, "unmounting "+bd.mount, func(l logical) (*bao.Secret, error) {
		return l.DeleteWithContext(ctx, "sys/mounts/"+bd.mount)
	}); err != nil {
		return nil, grpcErr(err)
	}
	stateCache.Delete(b.stateKey(bd))
	return &managementv1.DeleteKeystoreResponse{}, nil
}
