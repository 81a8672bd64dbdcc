// Command notification-log serves the JSON-lines NotificationService plugin
// (package pkg/plugins/notification/log) as an external OpenKCM plugin.
//
// plugin-sdk's host discards an external plugin's stdout and stderr, so this
// binary defaults to the hostlog sink (records reach the host's log through
// the plugin logger); configure sink: file for a dedicated JSON-lines file:
//
//	plugins:
//	  - name: APEIRO_ALERTS
//	    type: NotificationService
//	    path: /etc/plugins/notification/notification-log
//	    yamlConfiguration: |
//	      sink: file
//	      path: /var/log/apeiro/notifications.jsonl
package main

import (
	"fmt"
	"os"

	"github.com/openkcm/plugin-sdk/pkg/plugin"
	notificationv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	pluginoption "github.com/openkcm/plugin-sdk/api/plugin-option"

	notificationlog "github.com/apeirora/apeiro-cmk/pkg/plugins/notification/log"
)

func main() {
	p := notificationlog.New(notificationlog.WithDefaultSink(notificationlog.SinkHostLog))
	if err := plugin.ServeOptions(
		pluginoption.WithPluginServer(notificationv1.NotificationServicePluginServer(p)),
		pluginoption.WithServiceServer(configv1.ConfigServiceServer(p)),
		pluginoption.EnableInputValidation(),
	); err != nil {
		fmt.Fprintf(os.Stderr, "notification-log: %v\n", err)
		os.Exit(1)
	}
}
