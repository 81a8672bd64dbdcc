package local

import "github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"

// SourceRef is the common-sdk SourceRef shape shared by every keystore
// plugin (embedded, env or file); CMK injects `supportedregions` in it.
// Unknown keys inside it are ignored (see keystoreconfig).
type SourceRef = keystoreconfig.SourceRef

// Region is a supported region of a keystore.
type Region = keystoreconfig.Region

// parseSupportedRegions reads CMK's `supportedregions` value: {"regions":[...]}.
func parseSupportedRegions(ref *SourceRef) ([]Region, error) {
	return keystoreconfig.ParseRegions(ref)
}
