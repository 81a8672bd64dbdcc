package aws

import (
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// Access data / instance configuration fields. An Account's instance configuration (pkg/admission/pluginbacked)
// carries tenant, roleArn (spec.auth.irsaRoleARN), region, keyRef and namespace; access data minted by
// CreateKeystore carries the same roleArn + tenant pair.
const (
	FieldTenant     = "tenant"
	FieldRoleARN    = "roleArn"
	FieldRegion     = "region"
	FieldKeystoreID = "keystoreId"
)

// binding is a (tenant, role) pair that passed the platform's tenant-binding rules.
type binding struct {
	tenant string
	role   RoleARN
	region string // from the instance configuration; may be empty
}

func str(s *structpb.Struct, k string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(s.GetFields()[k].GetStringValue())
}

// bind checks access data against the tenant-binding rules, before anything reaches AWS:
//
//  1. no static credentials anywhere in it;
//  2. tenant and roleArn present and well-formed;
//  3. the role's path/name is exactly rolePattern with {tenant} replaced by the tenant — so a tenant cannot name
//     another tenant's role even in an account both can reach;
//  4. the role's account is allowed (accounts:, when configured).
//
// AWS then enforces the same binding again: the role's trust policy requires sts:ExternalId = tenant and the
// session tag tenant=<tenant>, both of which the plugin always sends (docs/keystore-aws.md).
func (b *backend) bind(values *structpb.Struct) (*binding, error) {
	if err := refuseStaticInStruct(values, "access data"); err != nil {
		return nil, &Error{Code: codes.InvalidArgument, Field: "accessData", Msg: err.Error(), Kind: keychain.ErrDenied, Cause: ErrStaticCredentials}
	}
	tenant, role := str(values, FieldTenant), str(values, FieldRoleARN)
	switch {
	case role == "" && tenant == "":
		return nil, accessDataErr(FieldRoleARN, "access data: roleArn and tenant are required (the Account's spec.auth.irsaRoleARN and its tenant)")
	case role == "":
		return nil, accessDataErr(FieldRoleARN, "access data: roleArn is required (the Account's spec.auth.irsaRoleARN)")
	case tenant == "":
		return nil, accessDataErr(FieldTenant, "access data: tenant is required")
	case !validTenant(tenant):
		return nil, accessDataErr(FieldTenant, "access data: tenant %q is not a tenant name (DNS label)", truncate(tenant))
	}
	ra, err := ParseRoleARN(role)
	if err != nil {
		return nil, accessDataErr(FieldRoleARN, "access data: roleArn: %v", err)
	}
	if want := b.cfg.roleNameFor(tenant); ra.Name != want {
		return nil, authErr(FieldRoleARN, "roleArn %s is not a role of tenant %q: the platform only assumes roles named %q for it", ra, tenant, want)
	}
	if !b.cfg.accountAllowed(ra.Account) {
		return nil, authErr(FieldRoleARN, "roleArn %s: account %s is not an allowed keystore account", ra, ra.Account)
	}
	bd := &binding{tenant: tenant, role: ra, region: str(values, FieldRegion)}
	if bd.region != "" && !b.cfg.regionAllowed(bd.region) {
		return nil, invalidArg(FieldRegion, "region %q is not an allowed AWS region", truncate(bd.region))
	}
	return bd, nil
}

// resolveKey parses keyID for a binding and returns the key reference and the region to call. Key ARNs must lie in
// the role's account and partition; a bare key id or alias is resolved in the role's account by construction.
func (b *backend) resolveKey(bd *binding, keyID string) (KeyRef, string, error) {
	k, err := ParseKeyRef(keyID)
	if err != nil {
		return KeyRef{}, "", invalidArg("keyId", "keyId: %v", err)
	}
	region := bd.region
	if k.IsARN {
		if k.Account != bd.role.Account || k.Partition != bd.role.Partition {
			return KeyRef{}, "", authErr("keyId", "key %s is in account %s, but tenant %q's role %s is in account %s: a key must lie in its role's account",
				truncate(k.Raw), k.Account, bd.tenant, bd.role, bd.role.Account)
		}
		if region != "" && k.Region != region {
			return KeyRef{}, "", invalidArg(FieldRegion, "key %s is in region %s, but the configured region is %s", truncate(k.Raw), k.Region, region)
		}
		region = k.Region
	}
	if region == "" {
		region = b.cfg.defaultRegion()
	}
	if !b.cfg.regionAllowed(region) {
		return KeyRef{}, "", invalidArg(FieldRegion, "region %q is not an allowed AWS region", region)
	}
	return k, region, nil
}

// keyClient authorises values for keyID and returns the tenant's KMS client in the key's region.
func (b *backend) keyClient(values *structpb.Struct, keyID string) (kmsAPI, KeyRef, *binding, error) {
	bd, err := b.bind(values)
	if err != nil {
		return nil, KeyRef{}, nil, err
	}
	k, region, err := b.resolveKey(bd, keyID)
	if err != nil {
		return nil, KeyRef{}, nil, err
	}
	c, err := b.tenantKMS(bd.role, region, bd.tenant)
	if err != nil {
		return nil, KeyRef{}, nil, err
	}
	return c, k, bd, nil
}

// IsDenied reports whether err is a refusal of the tenant binding or of credentials.
func IsDenied(err error) bool { return errors.Is(err, keychain.ErrDenied) }
