// Command sis-resourcegraph serves the ApeiroResourceGraphPlugin (package pkg/plugins/sis/resourcegraph) as an
// external OpenKCM SystemInformationService plugin: it answers Get(id, type) from a live view of the Platform Mesh
// in kcp. plugin-sdk's protovalidate input interceptor is on, so requests violating the proto rules (id/type
// shorter than 3) are refused before they reach the implementation (which checks them too).
//
//	plugins:
//	  - name: APEIRO_RESOURCE_GRAPH_KCP
//	    type: SystemInformationService
//	    path: /etc/plugins/system-information/sis-resourcegraph
//	    yamlConfiguration: |
//	      kubeconfig: /etc/kcp/kubeconfig
//	      platformWorkspace: root:platform
package main

import (
	systeminformationv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host/pluginmain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/sis/resourcegraph"
)

func main() {
	p := resourcegraph.New()
	defer p.Close()
	pluginmain.Serve(systeminformationv1.SystemInformationServicePluginServer(p), configv1.ConfigServiceServer(p))
}
