// Command certissuer-certmanager serves the cert-manager CertificateIssuerService plugin (package
// pkg/plugins/certissuer/certmanager) as an external OpenKCM plugin:
//
//	plugins:
//	  - name: APEIRO_PKI
//	    type: CertificateIssuerService
//	    path: /etc/plugins/certificate-issuer/certissuer-certmanager
//	    yamlConfiguration: |
//	      namespace: cmk-certificates
//	      issuerRef: {name: apeiro-tenant-ca, kind: ClusterIssuer}
//	      trustDomain: apeiro.example
//	      tenantCNPrefix: cmk-
package main

import (
	"fmt"
	"os"

	pluginoption "github.com/openkcm/plugin-sdk/api/plugin-option"
	"github.com/openkcm/plugin-sdk/pkg/plugin"
	certificate_issuerv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/certmanager"
)

func main() {
	p := certmanager.New()
	if err := plugin.ServeOptions(
		pluginoption.WithPluginServer(certificate_issuerv1.CertificateIssuerServicePluginServer(p)),
		pluginoption.WithServiceServer(configv1.ConfigServiceServer(p)),
		pluginoption.EnableInputValidation(),
	); err != nil {
		fmt.Fprintf(os.Stderr, "certissuer-certmanager: %v\n", err)
		os.Exit(1)
	}
}
