// Command certissuer-internalca serves the internal-CA CertificateIssuerService
// plugin (package pkg/plugins/certissuer/internalca) as an external OpenKCM
// plugin:
//
//	plugins:
//	  - name: APEIRO_PKI
//	    type: CertificateIssuerService
//	    path: /etc/plugins/certificate-issuer/certissuer-internalca
//	    yamlConfiguration: |
//	      caCertFile: /etc/apeiro/ca/tls.crt
//	      caKeyFile: /etc/apeiro/ca/tls.key
//	      tenantCNPrefix: cmk-
package main

import (
	certificate_issuerv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/internalca"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host/pluginmain"
)

func main() {
	p := internalca.New()
	pluginmain.Serve(certificate_issuerv1.CertificateIssuerServicePluginServer(p), configv1.ConfigServiceServer(p))
}
