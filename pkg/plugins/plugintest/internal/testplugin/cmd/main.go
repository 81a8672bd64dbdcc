// Command testplugin serves the harness test plugin over go-plugin.
package main

import (
	"github.com/openkcm/plugin-sdk/pkg/plugin"
	systeminformationv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest/internal/testplugin"
)

func main() {
	p := &testplugin.Plugin{}
	plugin.Serve(systeminformationv1.SystemInformationServicePluginServer(p), configv1.ConfigServiceServer(p))
}
