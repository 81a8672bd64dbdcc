// Package keystoreconfig parses the parts of a keystore plugin's
// yamlConfiguration that OpenKCM CMK owns, and decodes the rest with one
// strictness rule shared by every keystore backend.
//
// # What CMK sends
//
// CMK (openkcm/cmk, internal/pluginregistry/plugin_config_merge.go) adds a
// top-level `supportedregions` key to the YAML of every KeystoreProvider
// plugin before Configure. It unmarshals the operator's YAML into a map,
// sets the key to a common-sdk commoncfg.SourceRef and re-marshals with
// gopkg.in/yaml.v3, so a plugin receives exactly:
//
//	supportedregions:
//	    source: embedded
//	    env: ""
//	    file:
//	        path: ""
//	        format: ""
//	        jsonPath: ""
//	    value: '{"regions":[{"name":"eu","technicalName":"eu-central-1"}]}'
//
// # API (stable; every keystore backend uses it)
//
//   - SourceRef / FileRef: the common-sdk SourceRef shape. Embed a *SourceRef
//     field in a plugin's Config struct (json tags, parsed with
//     sigs.k8s.io/yaml). Its UnmarshalJSON is tolerant: keys it does not know
//     are ignored and listed in SourceRef.Unknown, so a field common-sdk adds
//     in future (as jsonPath was) cannot fail Configure.
//   - SourceRef.Load: resolves embedded / env / file (json + jsonPath, yaml,
//     binary), with common-sdk's semantics and bounded file sizes.
//   - SupportedRegionsKey, Region, ParseRegions: read CMK's injected list.
//   - Decode(yamlConfiguration, &cfg): the shared strictness rule (below).
//     Returns Warnings to log at Configure; never logs secrets (only key
//     names).
//   - EncodeSupportedRegions: the exact bytes CMK merges in, for hosts and
//     tests that emulate CMK.
//
// # Strictness: what it buys and where it stops
//
// Keys a plugin declares are decoded strictly: wrong types, duplicate keys
// and keys inside the plugin's own nested structs that it does not know are
// errors. An operator's typo (`dri:` for `dir:`) must fail the load loudly,
// because ignoring it can silently change where keys live.
//
// Strictness stops at what CMK owns. Unknown keys inside a SourceRef, its
// file or a region entry are ignored. An unknown top-level key is an error
// only when it looks like a typo of a declared key (same letters ignoring
// case, `-` and `_`, or at most two edits away); any other unknown top-level
// key is ignored and reported as a warning, so a key a future CMK merges
// into every KeystoreProvider's YAML (as it did with supportedregions)
// cannot take down the whole plugin set.
package keystoreconfig
