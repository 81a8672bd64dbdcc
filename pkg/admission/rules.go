package admission

// Admission rule IDs, carried in every denial's status.details.causes[].type as "FieldValueInvalid:<rule>". They are
// stable: clients and dashboards key on them, and docs/admission.md lists each one with the check behind it. The
// hierarchy rules (H-*) are declared in pkg/hierarchy. TestRulesDocumented keeps this list and the table in
// docs/admission.md equal.
const (
	RuleNSUnassigned      = "A-NS-UNASSIGNED"
	RuleOwnerMissing      = "A-OWNER-MISSING"
	RuleOwnerMismatch     = "A-OWNER-MISMATCH"
	RuleTenantUnknown     = "A-TENANT-UNKNOWN"
	RuleLabelMismatch     = "A-LABEL-MISMATCH"
	RuleLabelMissing      = "A-LABEL-MISSING"
	RuleTenantInUse       = "A-TENANT-IN-USE"
	RuleImmutable         = "A-IMMUTABLE"
	RuleRegion            = "A-REGION"
	RuleURL               = "A-URL"
	RuleAudience          = "A-AUDIENCE"
	RuleStaticCredentials = "A-STATIC-CREDENTIALS"
	RuleKeyNotFound       = "A-KEY-NOT-FOUND"
	RuleTenantBinding     = "A-KEY-TENANT-BINDING"
	RuleKeyNotEnabled     = "A-KEY-NOT-ENABLED"
	RuleSPIFFEID          = "A-SPIFFE-ID"
	RulePermission        = "A-PERMISSION"
	RuleAccountUnusable   = "A-ACCOUNT-UNUSABLE"
	RuleTerminating       = "A-TERMINATING"
	RuleNamespaceOccupied = "A-NS-OCCUPIED"
)
