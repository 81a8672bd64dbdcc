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
	notificationv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host/pluginmain"
	notificationlog "github.com/apeirora/apeiro-cmk/pkg/plugins/notification/log"
)

func main() {
	p := notificationlog.New(notificationlog.WithDefaultSink(notificationlog.SinkHostLog))
	pluginmain.Serve(notificationv1.NotificationServicePluginServer(p), configv1.ConfigServiceServer(p))
}
