// Command notification-alertmanager serves the Alertmanager NotificationService plugin (package
// pkg/plugins/notification/alertmanager) as an external OpenKCM plugin:
//
//	plugins:
//	  - name: APEIRO_ALERTS
//	    type: NotificationService
//	    path: /etc/plugins/notification/notification-alertmanager
//	    yamlConfiguration: |
//	      url: http://alertmanager.monitoring:9093
package main

import (
	notificationv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host/pluginmain"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/notification/alertmanager"
)

func main() {
	p := alertmanager.New()
	pluginmain.Serve(notificationv1.NotificationServicePluginServer(p), configv1.ConfigServiceServer(p))
}
