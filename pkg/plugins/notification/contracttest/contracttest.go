// Package contracttest is the reusable contract suite for NotificationService
// plugins. Run loads any implementation through the real plugin-sdk catalog —
// as an in-process builtin and as an external go-plugin process — configures
// it from YAML and checks the delivery semantics CMK relies on
// (docs/plugins.md: CMK turns success=false into "failed to send
// notification: <message>"):
//
//   - a well-formed EMAIL (what CMK sends), TEXT and WEB notification is
//     delivered: success=true;
//   - an undeliverable notification answers success=false with a non-empty
//     message and no gRPC error: unspecified type, no recipients, a body over
//     the plugin's cap (MaxBodyBytes), and whatever UndeliverableYAML
//     configures (e.g. an unwritable destination);
//   - optionally (Sink), the delivered record can be found and contains none
//     of the secrets the request carried (body beyond the preview, webhook
//     tokens in recipient URLs, e-mail local parts);
//   - Configure concurrent with sends, Configure("") for optional
//     configuration, invalid YAML rejected at load with a clear error,
//     go-plugin health SERVING, clean shutdown.
package contracttest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	notifv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

// DefaultName is the profile name used when Config.Name is empty.
const DefaultName = "APEIRO_ALERTS"

// Config describes the implementation under test.
type Config struct {
	// Name is the profile (and builtin) name; default APEIRO_ALERTS.
	Name string
	// BuiltIn returns a fresh builtin registered under Name. Nil skips builtin mode.
	BuiltIn func() catalog.BuiltInPlugin
	// BinaryPackage is the external plugin's main package. Empty skips external mode.
	BinaryPackage string
	Args          []string

	// YAML configures a working plugin with EMAIL, TEXT and WEB enabled.
	YAML string
	// ConfigOptional: Configure("") must succeed; otherwise it must fail.
	ConfigOptional bool
	// InvalidYAML must be rejected (default: broken YAML); InvalidYAMLMessage,
	// if set, must appear in the load error.
	InvalidYAML        string
	InvalidYAMLMessage string

	// MaxBodyBytes is the body cap under YAML; 0 skips the oversized-body check.
	MaxBodyBytes int
	// UndeliverableYAML, if set, configures the plugin so that delivery
	// fails at send time (e.g. an unwritable file); applied at runtime
	// through the Config service.
	UndeliverableYAML string
	// Sink, if set, returns everything the plugin has delivered so far under
	// YAML (e.g. the contents of its output file).
	Sink func(t *testing.T) string
}

func (c *Config) defaults() {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.InvalidYAML == "" {
		c.InvalidYAML = "{{{ this is: [not yaml"
	}
}

func (c *Config) spec(yaml string) plugintest.Spec {
	return plugintest.Spec{
		Type: host.TypeNotification, Name: c.Name, YAML: yaml,
		BuiltIn: c.BuiltIn, Package: c.BinaryPackage, Args: c.Args,
	}
}

// Secrets the suite plants in requests; none may reach the sink.
const (
	secretBodyTail  = "SECRET-BODY-TAIL-4f1c"
	secretHookToken = "SECRETHOOKTOKEN9a2b"
	secretMailLocal = "secret.local.part"
)

// Run runs the suite in every load mode the Config supports.
func Run(t *testing.T, c Config) {
	t.Helper()
	c.defaults()
	for _, mode := range c.spec("").Modes() {
		t.Run(string(mode), func(t *testing.T) {
			l := plugintest.Load(t, c.spec(c.YAML), mode)
			n, err := l.Notification()
			if err != nil {
				t.Fatal(err)
			}
			marker := "contract-" + string(mode) + "-" + time.Now().Format("150405.000000")
			t.Run("deliver", func(t *testing.T) { checkDeliver(t, &c, n, marker) })
			t.Run("undeliverable", func(t *testing.T) { checkUndeliverable(t, &c, n) })
			if c.Sink != nil {
				t.Run("sink-redaction", func(t *testing.T) { checkSink(t, &c, marker) })
			}
			t.Run("reconfigure-under-load", func(t *testing.T) { checkReconfigure(t, &c, l, n) })
			if c.UndeliverableYAML != "" {
				t.Run("undeliverable-destination", func(t *testing.T) { checkUndeliverableDestination(t, &c, l, n) })
			}
			checkConfigLifecycle(t, &c, mode)
			t.Run("health", func(t *testing.T) { plugintest.CheckHealth(t, l) })
			t.Run("shutdown", func(t *testing.T) { plugintest.CheckShutdown(t, l) })
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// cmkLike is shaped like CMK's notifier: EMAIL, e-mail recipients, HTML body.
func cmkLike(subject string) *notifv1.SendNotificationRequest {
	return &notifv1.SendNotificationRequest{
		NotificationType: notifv1.NotificationType_NOTIFICATION_TYPE_EMAIL,
		Recipients:       []string{secretMailLocal + "@example.org", "ops@example.org"},
		Subject:          subject,
		Body:             "<p>The L1 key of account acme became unreachable.</p>" + strings.Repeat(" ", 300) + secretBodyTail,
	}
}

func send(t *testing.T, n notifv1.NotificationServiceClient, req *notifv1.SendNotificationRequest) *notifv1.SendNotificationResponse {
	t.Helper()
	resp, err := n.SendNotification(ctx(t), req)
	if err != nil {
		t.Fatalf("SendNotification(%s): gRPC error %v; delivery outcomes must be reported as success/message", req.GetNotificationType(), err)
	}
	return resp
}

func checkDeliver(t *testing.T, c *Config, n notifv1.NotificationServiceClient, marker string) {
	reqs := []*notifv1.SendNotificationRequest{
		cmkLike(marker),
		{NotificationType: notifv1.NotificationType_NOTIFICATION_TYPE_TEXT, Recipients: []string{"+491511234567"}, Subject: marker + "-text", Body: "key rotated"},
		{NotificationType: notifv1.NotificationType_NOTIFICATION_TYPE_WEB,
			Recipients: []string{"https://hooks.example.com/services/T000/B000/" + secretHookToken},
			Subject:    marker + "-web", Body: `{"event":"KeyRotated"}`},
	}
	for _, req := range reqs {
		if resp := send(t, n, req); !resp.GetSuccess() {
			t.Fatalf("SendNotification(%s) not delivered: %q", req.GetNotificationType(), resp.GetMessage())
		}
	}
}

func checkUndeliverable(t *testing.T, c *Config, n notifv1.NotificationServiceClient) {
	cases := map[string]*notifv1.SendNotificationRequest{
		"unspecified type": {Recipients: []string{"ops@example.org"}, Subject: "s", Body: "b"},
		"no recipients":    {NotificationType: notifv1.NotificationType_NOTIFICATION_TYPE_EMAIL, Subject: "s", Body: "b"},
	}
	if c.MaxBodyBytes > 0 {
		cases["body over cap"] = &notifv1.SendNotificationRequest{
			NotificationType: notifv1.NotificationType_NOTIFICATION_TYPE_EMAIL, Recipients: []string{"ops@example.org"},
			Subject: "s", Body: strings.Repeat("x", c.MaxBodyBytes+1),
		}
	}
	for name, req := range cases {
		resp := send(t, n, req)
		if resp.GetSuccess() || strings.TrimSpace(resp.GetMessage()) == "" {
			t.Fatalf("%s: got success=%v message=%q, want success=false with a reason", name, resp.GetSuccess(), resp.GetMessage())
		}
	}
}

func checkSink(t *testing.T, c *Config, marker string) {
	out := c.Sink(t)
	for _, want := range []string{marker, marker + "-text", marker + "-web"} {
		if !strings.Contains(out, want) {
			t.Fatalf("sink has no record with subject %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{secretBodyTail, secretHookToken, secretMailLocal} {
		if strings.Contains(out, secret) {
			t.Fatalf("sink leaks %q:\n%s", secret, out)
		}
	}
}

func checkReconfigure(t *testing.T, c *Config, l *plugintest.Loaded, n notifv1.NotificationServiceClient) {
	plugintest.CheckReconfigureUnderLoad(t, l, func(ctx context.Context) error {
		resp, err := n.SendNotification(ctx, cmkLike("reconfigure"))
		if err == nil && !resp.GetSuccess() {
			err = fmt.Errorf("success=false: %s", resp.GetMessage())
		}
		return err
	})
}

func checkUndeliverableDestination(t *testing.T, c *Config, l *plugintest.Loaded, n notifv1.NotificationServiceClient) {
	cfg, err := l.ConfigClient(host.TypeNotification, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Configure(ctx(t), &configv1.ConfigureRequest{YamlConfiguration: c.UndeliverableYAML}); err != nil {
		t.Fatalf("Configure(UndeliverableYAML): %v", err)
	}
	t.Cleanup(func() {
		_, _ = cfg.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: c.YAML})
	})
	resp := send(t, n, cmkLike("undeliverable"))
	if resp.GetSuccess() || strings.TrimSpace(resp.GetMessage()) == "" {
		t.Fatalf("undeliverable destination: got success=%v message=%q, want success=false with a reason", resp.GetSuccess(), resp.GetMessage())
	}
}

func checkConfigLifecycle(t *testing.T, c *Config, mode plugintest.Mode) {
	plugintest.CheckConfigLifecycle(t, plugintest.ConfigCheck{Spec: c.spec, Optional: c.ConfigOptional,
		InvalidYAML: c.InvalidYAML, InvalidYAMLMessage: c.InvalidYAMLMessage}, mode)
}
