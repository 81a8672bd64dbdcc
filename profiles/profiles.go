// Package profiles embeds the plugin profiles shipped with apeiro-cmk, so the webhook server has a working default
// without any file on disk.
package profiles

import _ "embed"

// ApeiroBuiltin is profiles/apeiro-profile/config.yaml: the full plugin set as in-process builtins.
//
//go:embed apeiro-profile/config.yaml
var ApeiroBuiltin []byte
