// Package alertmanager is the ApeiroAlertPlugin: a NotificationService plugin that turns every notification into
// an Alertmanager v2 alert (POST /api/v2/alerts), so CMK's notifications reach the platform's observability stack
// and its routing (e-mail, chat, paging) instead of a log.
//
// It is the APEIRO_ALERTS entry of the Apeiro profile (builtin), and is also served as an external plugin binary by
// cmd/plugins/notification-alertmanager.
//
// SendNotification semantics, the same for every notification type:
//
//   - EMAIL (what CMK sends), TEXT and WEB: one alert with labels alertname (config, default CMKNotification),
//     severity (config), notification_type (email | text | web), subject_hash (first 16 hex digits of the
//     subject's SHA-256, so different subjects are different alerts) and the static labels of the config;
//     annotations summary (the subject), description (the body, at most maxBodyBytes) and recipients (masked:
//     e-mail local parts and URL paths are hidden — Alertmanager's routing decides who is told, not the request).
//     startsAt is now and endsAt now+resolveAfter: a notification is an event, not a lasting condition, so it
//     resolves by itself. Identical subjects within resolveAfter collapse into one alert (Alertmanager dedups by
//     label set), which is the grouping operators expect.
//   - success=true only when Alertmanager answered 2xx. Everything else is success=false with the reason (never
//     a gRPC error): unspecified type, no or blank recipients, body over maxBodyBytes, Alertmanager unreachable,
//     timed out or answering non-2xx. CMK turns that into "failed to send notification: <reason>".
//
// Configure validates the YAML and never dials Alertmanager, so a profile loads while Alertmanager is down; the
// first SendNotification then reports the outage. Configure("") is refused: the URL is required.
package alertmanager

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	notifv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apeirora/apeiro-cmk/pkg/alerts/amclient"
	notificationlog "github.com/apeirora/apeiro-cmk/pkg/plugins/notification/log"
)

const (
	// BuiltinName is the name under which the builtin is registered (the profile's APEIRO_ALERTS entry).
	BuiltinName = "APEIRO_ALERTS"

	buildInfo        = `{"plugin":"apeiro-notification-alertmanager","type":"NotificationService"}`
	maxRecipients    = 100
	maxRecipientSize = 512
	maxSubjectBytes  = 1024
)

// Plugin implements NotificationService and the config service.
type Plugin struct {
	notifv1.UnimplementedNotificationServiceServer
	configv1.UnimplementedConfigServer

	now      func() time.Time
	settings atomic.Pointer[settings]
}

var (
	_ notifv1.NotificationServiceServer = (*Plugin)(nil)
	_ configv1.ConfigServer             = (*Plugin)(nil)
)

// New returns an unconfigured plugin; SendNotification answers success=false until Configure succeeds.
func New() *Plugin { return &Plugin{now: time.Now} }

// NewBuiltIn returns the plugin as a plugin-sdk builtin named APEIRO_ALERTS.
func NewBuiltIn() catalog.BuiltInPlugin {
	p := New()
	return catalog.MakeBuiltIn(BuiltinName, notifv1.NotificationServicePluginServer(p), configv1.ConfigServiceServer(p))
}

// Configure validates the YAML and atomically replaces the settings.
func (p *Plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	s, err := parseConfig(req.GetYamlConfiguration())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "notification alertmanager: invalid configuration: %v", err)
	}
	p.settings.Store(s)
	bi := buildInfo
	return &configv1.ConfigureResponse{BuildInfo: &bi}, nil
}

// SendNotification posts one alert; see the package comment for the semantics.
func (p *Plugin) SendNotification(ctx context.Context, req *notifv1.SendNotificationRequest) (*notifv1.SendNotificationResponse, error) {
	if req == nil {
		return nil, status.Error(codes.InvalidArgument, "request is required")
	}
	s := p.settings.Load()
	if s == nil {
		return failed("the plugin is not configured"), nil
	}
	if reason := check(s, req); reason != "" {
		return failed(reason), nil
	}
	alert := p.alert(s, req)
	if err := s.client.PostAlerts(ctx, []amclient.Alert{alert}); err != nil {
		return failed("alertmanager did not accept the alert: " + err.Error()), nil
	}
	return &notifv1.SendNotificationResponse{Success: true, Message: "alert " + alert.Labels["alertname"] + " posted to alertmanager"}, nil
}

func failed(reason string) *notifv1.SendNotificationResponse {
	return &notifv1.SendNotificationResponse{Success: false, Message: reason}
}

func check(s *settings, req *notifv1.SendNotificationRequest) string {
	if req.GetNotificationType() == notifv1.NotificationType_NOTIFICATION_TYPE_UNSPECIFIED {
		return "notification type is unspecified"
	}
	if _, ok := notifv1.NotificationType_name[int32(req.GetNotificationType())]; !ok {
		return fmt.Sprintf("unknown notification type %d", req.GetNotificationType())
	}
	rs := req.GetRecipients()
	if len(rs) == 0 {
		return "no recipients"
	}
	if len(rs) > maxRecipients {
		return fmt.Sprintf("%d recipients exceed the limit of %d", len(rs), maxRecipients)
	}
	for i, r := range rs {
		if strings.TrimSpace(r) == "" || len(r) > maxRecipientSize || strings.ContainsFunc(r, unicode.IsControl) {
			return fmt.Sprintf("recipient %d is empty, longer than %d bytes or contains control characters", i, maxRecipientSize)
		}
	}
	if n := len(req.GetBody()); n > s.maxBody {
		return fmt.Sprintf("body of %d bytes exceeds the limit of %d bytes", n, s.maxBody)
	}
	if !utf8.ValidString(req.GetSubject()) || !utf8.ValidString(req.GetBody()) {
		return "subject and body must be UTF-8"
	}
	return ""
}

func (p *Plugin) alert(s *settings, req *notifv1.SendNotificationRequest) amclient.Alert {
	now := p.now().UTC()
	typ := strings.ToLower(strings.TrimPrefix(req.GetNotificationType().String(), "NOTIFICATION_TYPE_"))
	sum := sha256.Sum256([]byte(req.GetSubject()))
	labels := make(map[string]string, len(s.labels)+4)
	for k, v := range s.labels {
		labels[k] = v
	}
	labels["alertname"] = s.alertname
	labels["severity"] = s.severity
	labels["notification_type"] = typ
	labels["subject_hash"] = hex.EncodeToString(sum[:8])
	masked := make([]string, 0, len(req.GetRecipients()))
	for _, r := range req.GetRecipients() {
		masked = append(masked, notificationlog.MaskRecipient(r))
	}
	subject := req.GetSubject()
	if len(subject) > maxSubjectBytes {
		cut := maxSubjectBytes
		for cut > 0 && !utf8.RuneStart(subject[cut]) {
			cut--
		}
		subject = subject[:cut]
	}
	return amclient.Alert{
		Labels: labels,
		Annotations: map[string]string{
			"summary":     subject,
			"description": req.GetBody(),
			"recipients":  strings.Join(masked, ", "),
		},
		StartsAt:     now,
		EndsAt:       now.Add(s.resolveAfter),
		GeneratorURL: s.generatorURL,
	}
}
