// Package local is a software keystore for OpenKCM CMK: a KeystoreProvider
// (management) and a KeystoreInstanceKeyOperation (operations) plugin that
// generate and keep keys locally, in a directory or in memory.
//
// Keystore instances: CreateKeystore mints an instance ID and two access keys,
// HMAC-SHA256(secret, role || instanceID): one for the management role
// (GrantTrust, RemoveTrust, DeleteKeystore) and one for key management (all
// operations RPCs). The access data CMK stores and sends back is therefore
// {instanceId, accessKey}; the plugins verify it without shared state other
// than the secret. Management and operations must share the secret: the same
// `secret` SourceRef (production: a separately mounted Secret) or the same
// `dir` (development: the secret is created next to it as <dir>.secret). With
// neither, each plugin makes a random per-process secret, which suits tests
// and single-plugin use only.
//
// Keys: AES-256, RSA-3072 and RSA-4096 per KeyAlgorithm; every key has
// versions (RotateKey and a repeated ImportKeyMaterial add one), can be
// enabled/disabled, deleted with a window, and imported (BYOK) under an
// RSA-OAEP wrapping key. Key material at rest is sealed with AES-256-GCM
// under a key derived from the secret; files are 0600 and written atomically.
//
// Errors CMK maps semantically are exactly the SDK's keystore statuses
// (pkg/plugin/keystore/errors): unknown key → StatusKeyNotFound, wrong access
// key → StatusProviderAuthenticationError, missing or unparsable access data
// → StatusInvalidKeyAccessData.
package local
