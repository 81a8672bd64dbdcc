// Command sis-static serves the static resource-graph SystemInformationService
// plugin (package pkg/plugins/sis/static) as an external OpenKCM plugin. It
// enables plugin-sdk's protovalidate input interceptor, so requests violating
// the proto rules (id/type shorter than 3) are refused with InvalidArgument
// before they reach the implementation (which checks them too).
//
//	plugins:
//	  - name: APEIRO_RESOURCE_GRAPH
//	    type: SystemInformationService
//	    path: /etc/plugins/system-information/sis-static
//	    yamlConfiguration: |
//	      resources:
//	        - {type: region, id: eu-central, metadata: {audiences: "cmk,apeiro-webhook"}}
package main

import (
	systeminformationv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host/pluginmain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/sis/static"
)

func main() {
	p := static.New()
	pluginmain.Serve(systeminformationv1.SystemInformationServicePluginServer(p), configv1.ConfigServiceServer(p))
}
