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
	"fmt"
	"os"

	"github.com/openkcm/plugin-sdk/pkg/plugin"
	certificate_issuerv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	pluginoption "github.com/openkcm/plugin-sdk/api/plugin-option"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/internalca"
)

func main() {
	p := internalca.New()
	if err := plugin.ServeOptions(
		pluginoption.WithPluginServer(certificate_issuerv1.CertificateIssuerServicePluginServer(p)),
		pluginoption.WithServiceServer(configv1.ConfigServiceServer(p)),
		pluginoption.EnableInputValidation(),
	); err != nil {
		fmt.Fprintf(os.Stderr, "certissuer-internalca: %v\n", err)
		os.Exit(1)
	}
}
