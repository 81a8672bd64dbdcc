package aws

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/ksop"
)

// Tags and names on keystore roles created by CreateKeystore.
const (
	tagKeystore    = "apeiro-cmk:keystore"
	tagTrustPrefix = "apeiro-cmk:trust:"
	kmsPolicyName  = "apeiro-cmk-kms"
	FieldTrustID   = ksop.FieldTrustID
	FieldTrustType = "trustType"
	FieldSubject   = "subject"
)

// TrustPolicy is the trust policy of a tenant's (or keystore's) role: only the platform's IRSA role may assume it,
// only with ExternalId = tenant, and it may tag the session only with tenant = <tenant>. Operators write exactly this
// on the role an Account names (docs/keystore-aws.md); CreateKeystore writes it on the roles it creates.
//
// The principal lists the platform role and, if given, its session ARN (arn:aws:sts::<account>:assumed-role/<role>/
// <session>): AWS matches sessions of the role against the role ARN; moto, which the tests run against, compares
// the caller's session ARN literally. Both forms are valid AWS principals.
func TrustPolicy(platformRoleARN, platformSessionARN, tenant string) string {
	principals := []string{platformRoleARN}
	if platformSessionARN != "" {
		principals = append(principals, platformSessionARN)
	}
	return policyJSON(
		map[string]any{
			"Effect":    "Allow",
			"Principal": map[string]any{"AWS": principals},
			"Action":    "sts:AssumeRole",
			"Condition": map[string]any{"StringEquals": map[string]any{"sts:ExternalId": tenant}},
		},
		map[string]any{
			"Effect":    "Allow",
			"Principal": map[string]any{"AWS": principals},
			"Action":    "sts:TagSession",
			"Condition": map[string]any{"StringEquals": map[string]any{"aws:RequestTag/tenant": tenant}},
		},
	)
}

// sessionARN is the STS ARN of the platform's web-identity session.
func (p *platform) sessionARN() string {
	return "arn:" + p.roleARN.Partition + ":sts::" + p.roleARN.Account + ":assumed-role/" + p.roleARN.Name[strings.LastIndex(p.roleARN.Name, "/")+1:] + "/" + p.session
}

// KMSPolicy is the permissions policy of a keystore role: the KMS calls the plugin makes, on keys of the role's
// own account. (Operators may narrow it further, e.g. with a condition on aws:ResourceTag/apeiro-cmk:tenant.)
func KMSPolicy() string {
	return policyJSON(map[string]any{
		"Effect": "Allow",
		"Action": []string{
			"kms:CreateKey", "kms:DescribeKey", "kms:EnableKey", "kms:DisableKey", "kms:ScheduleKeyDeletion",
			"kms:GetParametersForImport", "kms:ImportKeyMaterial", "kms:ListKeyRotations", "kms:CreateAlias",
			"kms:TagResource", "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey",
		},
		// "*" reaches keys of the role's own account, plus keys whose key policy grants this role (cross-account
		// use needs both sides). The plugin additionally refuses key ARNs outside the role's account.
		"Resource": "*",
	})
}

func policyJSON(statements ...map[string]any) string {
	b, _ := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": statements})
	return string(b)
}

// Management is the KeystoreProvider plugin. A keystore instance is an IAM role in the platform's keystore account,
// created for the instance and bound to it exactly like a tenant's role (name from rolePattern with the instance id
// as {tenant}, trust policy with ExternalId = instance id). Its access data is {roleArn, tenant: <instance id>}, the
// same shape an Account's instance configuration has, so the operations plugin needs no other path. GrantTrust and
// RemoveTrust record trusted certificate subjects as role tags; DeleteKeystore deletes the role.
type Management struct {
	managementv1.UnimplementedKeystoreProviderServer
	ksop.Host[*Config, backend] // Configure, Close and the current backend
}

// NewManagement returns a management plugin with the empty configuration.
func NewManagement() *Management { return newManagement(defaultFactory()) }

func newManagement(f clientFactory) *Management {
	m := &Management{}
	m.Init("aws", ksop.Provider, ParseConfig, f.build)
	return m
}

// IgnoredKeys implements ksop.Config.
func (c *Config) IgnoredKeys() keystoreconfig.Warnings { return c.warnings }

// splitRoleName turns "a/b/name" into IAM's Path "/a/b/" and RoleName "name".
func splitRoleName(n string) (path, name string) {
	i := strings.LastIndex(n, "/")
	if i < 0 {
		return "/", n
	}
	return "/" + n[:i+1], n[i+1:]
}

// CreateKeystore creates a keystore role (IAM CreateRole + the KMS permissions policy) in the platform's account.
// A failure after CreateRole deletes the role again, so no half-created keystore remains.
func (m *Management) CreateKeystore(ctx context.Context, _ *managementv1.CreateKeystoreRequest) (*managementv1.CreateKeystoreResponse, error) {
	resp, err := m.Load().createKeystore(ctx)
	return resp, grpcErr(err)
}

func (b *backend) createKeystore(ctx context.Context) (*managementv1.CreateKeystoreResponse, error) {
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	regions, err := b.cfg.supportedRegions()
	if err != nil {
		return nil, invalidArg("supportedregions", "supportedregions: %v", err)
	}
	p, err := b.platformIdentity()
	if err != nil {
		return nil, err
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd)
	inst := "ks-" + hex.EncodeToString(rnd)
	full := b.cfg.roleNameFor(inst)
	path, name := splitRoleName(full)
	out, err := p.iam.CreateRole(ctx, &iam.CreateRoleInput{
		RoleName:                 sdkaws.String(name),
		Path:                     sdkaws.String(path),
		AssumeRolePolicyDocument: sdkaws.String(TrustPolicy(p.roleARN.String(), p.sessionARN(), inst)),
		Description:              sdkaws.String("apeiro-cmk keystore " + inst),
		Tags:                     []iamtypes.Tag{{Key: sdkaws.String(tagKeystore), Value: sdkaws.String(inst)}},
	})
	if err != nil {
		return nil, mapAWS(ctx, "CreateRole "+full, err)
	}
	roleARN := sdkaws.ToString(out.Role.Arn)
	if _, err := p.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{
		RoleName: sdkaws.String(name), PolicyName: sdkaws.String(kmsPolicyName), PolicyDocument: sdkaws.String(KMSPolicy()),
	}); err != nil {
		e := mapAWS(ctx, "PutRolePolicy "+full, err)
		if _, derr := p.iam.DeleteRole(context.WithoutCancel(ctx), &iam.DeleteRoleInput{RoleName: sdkaws.String(name)}); derr != nil {
			e.Msg += fmt.Sprintf("; the new role %s could not be deleted (%v): delete it manually", roleARN, derr)
		}
		return nil, e
	}
	access := map[string]any{FieldRoleARN: roleARN, FieldTenant: inst, FieldKeystoreID: inst}
	return ksop.KeystoreResponse(regions, b.cfg.defaultRegion(), inst, access), nil
}

// authKeystore checks management access data: the binding rules, then that the role is a keystore role of this
// instance (its apeiro-cmk:keystore tag names the access data's tenant).
func (b *backend) authKeystore(ctx context.Context, values *structpb.Struct) (*platform, *binding, string, error) {
	bd, err := b.bind(values)
	if err != nil {
		return nil, nil, "", err
	}
	p, err := b.platformIdentity()
	if err != nil {
		return nil, nil, "", err
	}
	_, name := splitRoleName(bd.role.Name)
	out, err := p.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: sdkaws.String(name)})
	if err != nil {
		e := mapAWS(ctx, "GetRole "+bd.role.String(), err)
		if isNotFound(e) {
			return nil, nil, "", authErr(FieldRoleARN, "keystore role %s does not exist", bd.role)
		}
		return nil, nil, "", e
	}
	if sdkaws.ToString(out.Role.Arn) != bd.role.String() {
		return nil, nil, "", authErr(FieldRoleARN, "role %s is not a keystore role of the platform's account", bd.role)
	}
	tagged := ""
	for _, t := range out.Role.Tags {
		if sdkaws.ToString(t.Key) == tagKeystore {
			tagged = sdkaws.ToString(t.Value)
		}
	}
	if tagged != bd.tenant {
		return nil, nil, "", authErr(FieldTenant, "role %s is not the keystore role of %q", bd.role, bd.tenant)
	}
	return p, bd, name, nil
}

func isNotFound(e *Error) bool {
	return e != nil && e.Kind != nil && e.Field == "keyId" && e.SDK != nil && e.SDK.Code() == codes.NotFound
}

// GrantTrust records a trusted certificate subject for the keystore as a role tag (key apeiro-cmk:trust:<id>, value
// the region) and returns access data naming it for RemoveTrust.
func (m *Management) GrantTrust(ctx context.Context, req *managementv1.GrantTrustRequest) (*managementv1.GrantTrustResponse, error) {
	resp, err := m.Load().grantTrust(ctx, req)
	return resp, grpcErr(err)
}

func (b *backend) grantTrust(ctx context.Context, req *managementv1.GrantTrustRequest) (*managementv1.GrantTrustResponse, error) {
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	tr, err := ksop.ParseGrant(req, invalidArg)
	if err != nil {
		return nil, err
	}
	if len(tr.Region) > 128 || strings.ContainsAny(tr.Region, ",;\"'") {
		return nil, invalidArg("region", "region %q is not a region name", truncate(tr.Region))
	}
	p, bd, name, err := b.authKeystore(ctx, req.GetConfig().GetValues())
	if err != nil {
		return nil, err
	}
	id := tr.ID
	if _, err := p.iam.TagRole(ctx, &iam.TagRoleInput{RoleName: sdkaws.String(name), Tags: []iamtypes.Tag{{Key: sdkaws.String(tagTrustPrefix + id), Value: sdkaws.String(tr.Region)}}}); err != nil {
		return nil, mapAWS(ctx, "TagRole "+bd.role.String(), err)
	}
	ad, _ := structpb.NewStruct(map[string]any{FieldRoleARN: bd.role.String(), FieldTenant: bd.tenant, FieldTrustID: id, FieldTrustType: tr.Kind, FieldSubject: tr.Subject, FieldRegion: tr.Region})
	return &managementv1.GrantTrustResponse{AccessData: ad}, nil
}

// RemoveTrust removes a subject recorded by GrantTrust (removing one that is gone already succeeds).
func (m *Management) RemoveTrust(ctx context.Context, req *managementv1.RemoveTrustRequest) (*managementv1.RemoveTrustResponse, error) {
	b := m.Load()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	p, bd, name, err := b.authKeystore(ctx, req.GetConfig().GetValues())
	if err != nil {
		return nil, grpcErr(err)
	}
	id, err := ksop.TrustID(req.GetAccessData(), accessDataErr, truncate)
	if err != nil {
		return nil, grpcErr(err)
	}
	if r := str(req.GetAccessData(), FieldRoleARN); r != "" && r != bd.role.String() {
		return nil, grpcErr(authErr(FieldRoleARN, "trust %s belongs to role %s, not %s", id, truncate(r), bd.role))
	}
	if _, err := p.iam.UntagRole(ctx, &iam.UntagRoleInput{RoleName: sdkaws.String(name), TagKeys: []string{tagTrustPrefix + id}}); err != nil {
		return nil, grpcErr(mapAWS(ctx, "UntagRole "+bd.role.String(), err))
	}
	return &managementv1.RemoveTrustResponse{}, nil
}

// DeleteKeystore deletes the keystore role (its policy first). Keys stay in KMS under their own deletion windows.
func (m *Management) DeleteKeystore(ctx context.Context, req *managementv1.DeleteKeystoreRequest) (*managementv1.DeleteKeystoreResponse, error) {
	b := m.Load()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	p, bd, name, err := b.authKeystore(ctx, req.GetConfig().GetValues())
	if err != nil {
		return nil, grpcErr(err)
	}
	if _, err := p.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: sdkaws.String(name), PolicyName: sdkaws.String(kmsPolicyName)}); err != nil {
		if e := mapAWS(ctx, "DeleteRolePolicy", err); !isNotFound(e) {
			return nil, grpcErr(e)
		}
	}
	if _, err := p.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: sdkaws.String(name)}); err != nil {
		return nil, grpcErr(mapAWS(ctx, "DeleteRole "+bd.role.String(), err))
	}
	// Forget cached credentials of the role: the keystore is gone.
	b.mu.Lock()
	for k := range b.tenants {
		if k.role == bd.role.String() {
			delete(b.tenants, k)
		}
	}
	b.mu.Unlock()
	return &managementv1.DeleteKeystoreResponse{}, nil
}
