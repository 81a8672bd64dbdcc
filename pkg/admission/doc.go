// Package admission holds the validating and mutating admission handlers for the cmk.apeiro.io kinds (Tenant,
// Account, ServiceEncryptionKey, WebHookNotification) and for upstream operations.openkcm.io Tenants.
//
// Data flows one way: the API server sends an AdmissionReview, a handler decodes the object and asks small
// interfaces (the tenant hierarchy, the owner of a namespace, region/audience policy, key reachability, caller
// permissions) and answers with one AdmissionResponse whose message names the field, the value and the tenants
// involved. The hierarchy is an in-memory index kept current by informers (see Sync); misses fall back to one live
// read so that objects created a moment ago are seen. Nothing on the path blocks on a backend longer than its budget.
//
// Handlers never cause side effects: they only read, so dry-run requests (kubectl apply --dry-run=server) get the
// same verdict as real ones and leave no trace (the webhook configurations declare sideEffects: NoneOnDryRun).
package admission
