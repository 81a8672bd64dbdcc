package aws

import (
	"fmt"
	"regexp"
	"strings"
)

// Bounds and shapes of the identifiers the plugin accepts. Everything a tenant or CMK hands in is parsed here before
// it reaches AWS, so a malformed value is an error naming the field, never an AWS round trip.
var (
	partitionRE = regexp.MustCompile(`^aws(-[a-z]+)*$`)
	accountRE   = regexp.MustCompile(`^[0-9]{12}$`)
	regionRE    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)
	// IAM role path + name: path segments and the name use IAM's character set; at most 512 characters.
	roleNameRE = regexp.MustCompile(`^([A-Za-z0-9+=,.@_-]+/)*[A-Za-z0-9+=,.@_-]{1,64}$`)
	// KMS key ids are UUIDs (multi-Region keys prefixed mrk-, 32 hex); aliases are alias/<name>.
	keyUUIDRE  = regexp.MustCompile(`^(mrk-[0-9a-f]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$`)
	aliasRE    = regexp.MustCompile(`^alias/[A-Za-z0-9/_-]{1,250}$`)
	bareKeyRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9/_.:-]{0,255}$`)
	tenantRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)
	sessionBad = regexp.MustCompile(`[^A-Za-z0-9+=,.@_-]`)
)

const maxARNLen = 2048

// RoleARN is a parsed IAM role ARN.
type RoleARN struct {
	Partition, Account string
	// Name is the role's path and name after "role/" (e.g. "apeiro-cmk/tenant-acme" or "apeiro-cmk-tenant-acme").
	Name string
}

func (r RoleARN) String() string {
	return "arn:" + r.Partition + ":iam::" + r.Account + ":role/" + r.Name
}

// ParseRoleARN parses arn:<partition>:iam::<account>:role/<path/name>.
func ParseRoleARN(s string) (RoleARN, error) {
	if len(s) > maxARNLen {
		return RoleARN{}, fmt.Errorf("role ARN is %d characters, more than %d", len(s), maxARNLen)
	}
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return RoleARN{}, fmt.Errorf("%q is not an ARN (want arn:aws:iam::<account>:role/<name>)", truncate(s))
	}
	switch {
	case !partitionRE.MatchString(parts[1]):
		return RoleARN{}, fmt.Errorf("role ARN %q: invalid partition %q", truncate(s), truncate(parts[1]))
	case parts[2] != "iam":
		return RoleARN{}, fmt.Errorf("role ARN %q: service is %q, want iam", truncate(s), truncate(parts[2]))
	case parts[3] != "":
		return RoleARN{}, fmt.Errorf("role ARN %q: IAM ARNs have no region", truncate(s))
	case !accountRE.MatchString(parts[4]):
		return RoleARN{}, fmt.Errorf("role ARN %q: account must be 12 digits", truncate(s))
	case !strings.HasPrefix(parts[5], "role/"):
		return RoleARN{}, fmt.Errorf("role ARN %q: resource must be role/<name>", truncate(s))
	}
	name := strings.TrimPrefix(parts[5], "role/")
	if len(name) > 512 || !roleNameRE.MatchString(name) {
		return RoleARN{}, fmt.Errorf("role ARN %q: invalid role name", truncate(s))
	}
	return RoleARN{Partition: parts[1], Account: parts[4], Name: name}, nil
}

// KeyRef is a parsed KMS key reference: a key or alias ARN, a bare key id, or alias/<name>. Bare forms carry no
// account or region; they are resolved in the account of the role that uses them.
type KeyRef struct {
	Raw string
	// Set only for ARNs.
	Partition, Region, Account string
	// ID is the key id (UUID) or alias name (alias/...).
	ID    string
	IsARN bool
}

// IsAlias reports whether the reference names an alias.
func (k KeyRef) IsAlias() bool { return strings.HasPrefix(k.ID, "alias/") }

// ParseKeyRef parses a KMS key reference.
func ParseKeyRef(s string) (KeyRef, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return KeyRef{}, fmt.Errorf("key id is empty")
	}
	if len(s) > maxARNLen {
		return KeyRef{}, fmt.Errorf("key id is %d characters, more than %d", len(s), maxARNLen)
	}
	if !strings.HasPrefix(s, "arn:") {
		if !bareKeyRE.MatchString(s) {
			return KeyRef{}, fmt.Errorf("key id %q: want a KMS key ARN, key id or alias/<name>", truncate(s))
		}
		return KeyRef{Raw: s, ID: s}, nil
	}
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 {
		return KeyRef{}, fmt.Errorf("key ARN %q: want arn:aws:kms:<region>:<account>:key/<id>", truncate(s))
	}
	switch {
	case !partitionRE.MatchString(parts[1]):
		return KeyRef{}, fmt.Errorf("key ARN %q: invalid partition", truncate(s))
	case parts[2] != "kms":
		return KeyRef{}, fmt.Errorf("key ARN %q: service is %q, want kms", truncate(s), truncate(parts[2]))
	case !regionRE.MatchString(parts[3]):
		return KeyRef{}, fmt.Errorf("key ARN %q: invalid region %q", truncate(s), truncate(parts[3]))
	case !accountRE.MatchString(parts[4]):
		return KeyRef{}, fmt.Errorf("key ARN %q: account must be 12 digits", truncate(s))
	}
	res := parts[5]
	switch {
	case strings.HasPrefix(res, "key/") && keyUUIDRE.MatchString(strings.TrimPrefix(res, "key/")):
		return KeyRef{Raw: s, Partition: parts[1], Region: parts[3], Account: parts[4], ID: strings.TrimPrefix(res, "key/"), IsARN: true}, nil
	case aliasRE.MatchString(res):
		return KeyRef{Raw: s, Partition: parts[1], Region: parts[3], Account: parts[4], ID: res, IsARN: true}, nil
	default:
		return KeyRef{}, fmt.Errorf("key ARN %q: resource must be key/<uuid> or alias/<name>", truncate(s))
	}
}

// validRegion reports whether r looks like an AWS region name.
func validRegion(r string) bool { return regionRE.MatchString(r) }

// validTenant reports whether t is a tenant name as the webhook stamps it (a DNS-1123 label or subdomain).
func validTenant(t string) bool { return len(t) <= 63 && tenantRE.MatchString(t) }

// sessionName builds an STS role session name (2..64 characters of [\w+=,.@-]) naming the tenant, so CloudTrail
// shows which tenant a call was made for.
func sessionName(prefix, tenant string) string {
	s := sessionBad.ReplaceAllString(prefix+"-"+tenant, "-")
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

func truncate(s string) string {
	if len(s) > 96 {
		return s[:96] + "…"
	}
	return s
}
