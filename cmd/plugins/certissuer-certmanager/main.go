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
	certificate_issuerv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/certmanager"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host/pluginmain"
)

func main() {
	p := certmanager.New()
	pluginmain.Serve(certificate_issuerv1.CertificateIssuerServicePluginServer(p), configv1.ConfigServiceServer(p))
}
