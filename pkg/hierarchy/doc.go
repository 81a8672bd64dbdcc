// Package hierarchy is the in-memory model of the tenant hierarchy (Root,
// Nested and Shadow tenants), the Accounts they own and the
// ServiceEncryptionKeys that reference those Accounts.
//
// It answers two kinds of questions without doing any I/O:
//
//   - would writing or deleting a Tenant or Account keep the hierarchy valid
//     (ValidateTenant, ValidateTenantDelete, ValidateAccountDelete), and
//   - may a ServiceEncryptionKey owned by one tenant use an Account owned by
//     another (MayReference, MayReferenceAccount; rule FR-4.3).
//
// The model is fed by informers through the Upsert*/Delete* methods, which
// never validate: the cluster is the source of truth, and objects may arrive
// out of order (a child before its parent) or be inconsistent (written while
// the webhook was down). Every read tolerates such data.
//
// Tenant IDs are interned to int32 indexes; parent and shadow edges are int32
// slices, so a reference check is two map lookups plus a walk of at most the
// tree depth, with no allocation on the allowed path. All methods are safe for
// concurrent use; reads share a sync.RWMutex.
//
// The rule table, with stable rule IDs carried by RuleError.Rule, is in
// docs/hierarchy.md.
package hierarchy
