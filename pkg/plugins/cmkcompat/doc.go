// Package cmkcompat is the CMK-compatibility suite: it drives plugins the way
// a stock OpenKCM CMK does, so "it loads in our host" also means "it loads
// and works in CMK".
//
// The shapes come from openkcm/cmk at commit 788ec3c (the last commit on
// plugin-sdk v0.14.0) and are recorded in docs/plugins.md:
//
//   - Loading: CMK merges a top-level `supportedregions` common-sdk SourceRef
//     into the YAML of every KeystoreProvider (yaml.v3, byte for byte what
//     host.InjectSupportedRegions emits), loads every plugin through one
//     catalog, and one failing plugin fails the whole load.
//   - Keystores: CreateKeystore with empty values; the response stored as
//     {roleManagementConfig, keyManagementConfig, supportedRegions} (JSON in
//     CMK's database); GrantTrust / RemoveTrust with the role-management
//     access data merged into {authType, clientCert, privateKey}; key
//     operations with the key-management access data merged the same way;
//     CreateKey with CMK's key UUID as id; the BYOK round trip: CMK reads
//     publicKey, wrappingAlgorithm, hashFunction and a string providerParams
//     (optional validTo, RFC 3339) from GetImportParameters and sends only
//     {providerParams[, algorithm]} back to ImportKeyMaterial.
//   - Certificates: GetCertificate with an RSA-3072 PKCS#1 private key; CMK
//     finds its certificate in the chain by public key.
//   - Identity: GetGroup by name, GetUsersForGroup, GetGroupsForUser,
//     GetUser, GetAllGroups, with an auth context map.
//   - Systems: Get(id=<system identifier>, type=<system type>); CMK only logs
//     NotFound.
//   - Notifications: SendNotification of type EMAIL.
//
// Every keystore backend runs RunKeystore in both load modes:
//
//	func TestCMKCompat(t *testing.T) {
//		cmkcompat.RunKeystore(t, cmkcompat.Keystore{
//			Name:       "LOCAL",
//			Management: plugintest.Spec{...}, // Type KeystoreProvider
//			Operations: plugintest.Spec{...}, // Type KeystoreInstanceKeyOperation
//			Regions:    []host.SupportedRegion{{Name: "EU", TechnicalName: "eu-central-1"}},
//		})
//	}
//
// The suite fails; it never skips. A backend that needs a real peer skips
// through internal/testpeers before calling it.
package cmkcompat
