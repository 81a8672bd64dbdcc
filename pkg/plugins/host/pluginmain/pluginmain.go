// Package pluginmain is the plugin-side counterpart of package host: the
// shared main of plugin binaries under cmd/plugins. A binary builds its
// implementation and calls Serve (or ServeMode when one binary backs several
// plugin types). It lives outside cmd/plugins so that `make plugins`, which
// builds every cmd/plugins/* directory, sees only binaries there.
package pluginmain

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/openkcm/plugin-sdk/api"
	pluginoption "github.com/openkcm/plugin-sdk/api/plugin-option"
	"github.com/openkcm/plugin-sdk/pkg/plugin"
)

// Serve serves one plugin type over go-plugin and never returns on success.
// Requests are validated with protovalidate (the SDK's interceptor), the
// same check CMK's facades make, so an external plugin rejects what CMK
// would never send even when called by another host.
func Serve(pluginServer api.PluginServer, services ...api.ServiceServer) {
	err := plugin.ServeOptions(
		pluginoption.WithPluginServer(pluginServer),
		pluginoption.WithServiceServer(services...),
		pluginoption.EnableInputValidation(),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to serve plugin %s: %v\n", pluginServer.Type(), err)
		os.Exit(1)
	}
}

// Mode builds the servers of one plugin type.
type Mode func() (api.PluginServer, []api.ServiceServer)

// ServeMode serves the mode named by the first command-line argument. One
// go-plugin process serves exactly one plugin type (the handshake cookie is
// the type), so a binary backing two types (keystore management and
// operations) is configured twice in the profile with different `args:`.
func ServeMode(binary string, modes map[string]Mode) {
	names := make([]string, 0, len(modes))
	for n := range modes {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(os.Args) < 2 || modes[os.Args[1]] == nil {
		fmt.Fprintf(os.Stderr, "usage: %s %s\n\nAn OpenKCM CMK plugin; start it from CMK's plugins: configuration with args: [<mode>].\n",
			binary, strings.Join(names, "|"))
		os.Exit(2)
	}
	p, services := modes[os.Args[1]]()
	Serve(p, services...)
}
