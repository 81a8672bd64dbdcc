// Package builtin is the registry of every plugin this project ships as an
// in-process builtin. A profile entry without `path:` is matched against this
// list by name AND type (catalog rule), so each entry's name is the profile
// name of its plugin.
//
// Keep this a plain list: adding a backend means one line here (plus its
// package and a passing contract suite, see docs/plugins.md).
package builtin

import (
	"github.com/openkcm/plugin-sdk/pkg/catalog"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/certmanager"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/internalca"
	identityapeiro "github.com/apeirora/apeiro-cmk/pkg/plugins/identity/apeiro"
	keystoreaws "github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/aws"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/local"
	keystoreopenbao "github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/openbao"
	keystorethales "github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/thales"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/notification/alertmanager"
	sisstatic "github.com/apeirora/apeiro-cmk/pkg/plugins/sis/static"
)

// Profile names of the builtins (profiles/apeiro-profile/config.yaml).
const (
	NameLocalKeystore   = "LOCAL"
	NameAWSKeystore     = "AWS"
	NameOpenBaoKeystore = "OPENBAO"
	NameThalesKeystore  = "THALES"

	// The plugins below name themselves (their NewBuiltIn); these constants refer to that one declaration.
	NameIdentity          = identityapeiro.BuiltinName
	NameCertificateIssuer = internalca.BuiltinName
	NameSystemInformation = sisstatic.BuiltinName
	NameNotification      = alertmanager.BuiltinName
)

// All returns fresh instances of every builtin plugin. Call it once per
// host.Load: a builtin instance holds its plugin's state.
func All() []catalog.BuiltInPlugin {
	return []catalog.BuiltInPlugin{
		// Keystores (KeystoreProvider + KeystoreInstanceKeyOperation share a name).
		local.NewManagementBuiltIn(NameLocalKeystore),
		local.NewOperationsBuiltIn(NameLocalKeystore),
		keystoreaws.NewManagementBuiltIn(NameAWSKeystore),
		keystoreaws.NewOperationsBuiltIn(NameAWSKeystore),
		keystoreopenbao.NewManagementBuiltIn(NameOpenBaoKeystore),
		keystoreopenbao.NewOperationsBuiltIn(NameOpenBaoKeystore),
		keystorethales.NewManagementBuiltIn(NameThalesKeystore),
		keystorethales.NewOperationsBuiltIn(NameThalesKeystore),

		// Identity, certificate issuer, system information, notification.
		identityapeiro.NewBuiltIn(),
		internalca.NewBuiltIn(),
		certmanager.NewBuiltIn(), // APEIRO_CERT_MANAGER: alternative issuer, docs/certificates.md
		sisstatic.NewBuiltIn(),
		alertmanager.NewBuiltIn(),
	}
}
