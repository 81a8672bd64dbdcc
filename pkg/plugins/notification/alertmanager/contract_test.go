package alertmanager_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	notifv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"

	amtest "github.com/apeirora/apeiro-cmk/internal/testpeers/alertmanager"
	"github.com/apeirora/apeiro-cmk/pkg/alerts/amclient"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/notification/alertmanager"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/notification/contracttest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

func TestMain(m *testing.M) { plugintest.Main(m) }

const binary = "github.com/apeirora/apeiro-cmk/cmd/plugins/notification-alertmanager"

// closedURL is an address nothing listens on: an Alertmanager outage.
func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// TestContract runs the notification contract suite in both load modes against a real Alertmanager.
func TestContract(t *testing.T) {
	am := amtest.Start(t)
	contracttest.Run(t, contracttest.Config{
		BuiltIn:            alertmanager.NewBuiltIn,
		BinaryPackage:      binary,
		YAML:               "url: " + am.URL + "\nmaxBodyBytes: 4096\nlabels: {suite: contract}\n",
		ConfigOptional:     false,
		InvalidYAMLMessage: "notification alertmanager: invalid configuration",
		MaxBodyBytes:       4096,
		UndeliverableYAML:  "url: " + closedURL(t) + "\ntimeout: 2s\n",
	})
}

// TestAlertsVisibleAndDelivered shows a CMK-shaped notification as an alert in Alertmanager's API, routed to and
// delivered by Alertmanager's webhook receiver, with recipients masked.
func TestAlertsVisibleAndDelivered(t *testing.T) {
	am := amtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, mode := range []plugintest.Mode{plugintest.ModeBuiltin, plugintest.ModeExternal} {
		t.Run(string(mode), func(t *testing.T) {
			subject := "L1 key unreachable " + string(mode)
			l := plugintest.Load(t, plugintest.Spec{Type: host.TypeNotification, Name: alertmanager.BuiltinName,
				YAML:    "url: " + am.URL + "\nseverity: critical\ngeneratorURL: https://cmk.example.org/\nlabels: {cluster: test}\n",
				BuiltIn: alertmanager.NewBuiltIn, Package: binary}, mode)
			n, err := l.Notification()
			if err != nil {
				t.Fatal(err)
			}
			resp, err := n.SendNotification(ctx, &notifv1.SendNotificationRequest{
				NotificationType: notifv1.NotificationType_NOTIFICATION_TYPE_EMAIL,
				Recipients:       []string{"secret.local@example.org"}, Subject: subject, Body: "<p>account acme</p>",
			})
			if err != nil || !resp.GetSuccess() {
				t.Fatalf("SendNotification: %v %v", resp, err)
			}
			c, _ := amclient.New(amclient.Options{URL: am.URL})
			got, err := c.GetAlerts(ctx, `alertname="CMKNotification"`, `cluster="test"`)
			if err != nil {
				t.Fatal(err)
			}
			var found *amclient.Gettable
			for i := range got {
				if got[i].Annotations["summary"] == subject {
					found = &got[i]
				}
			}
			if found == nil {
				t.Fatalf("alert %q not listed by alertmanager: %+v", subject, got)
			}
			if found.Labels["severity"] != "critical" || found.Labels["notification_type"] != "email" || found.GeneratorURL != "https://cmk.example.org/" || found.Status.State != "active" {
				t.Errorf("alert %+v", found)
			}
			if strings.Contains(found.Annotations["recipients"], "secret.local") {
				t.Errorf("recipient local part leaked: %q", found.Annotations["recipients"])
			}
			if !found.EndsAt.After(found.StartsAt) {
				t.Errorf("endsAt %v not after startsAt %v", found.EndsAt, found.StartsAt)
			}
			hash := found.Labels["subject_hash"]
			am.WaitReceived(ctx, t, 20*time.Second, "firing", func(l map[string]string) bool { return l["subject_hash"] == hash })
		})
	}
}
