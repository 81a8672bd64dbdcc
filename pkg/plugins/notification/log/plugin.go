// Package log is a NotificationService plugin that records every notification
// as one JSON line in a configured sink (stdout, stderr, a file, or the host's
// plugin log).
//
// It is the default notification plugin of the Apeiro profile (builtin name
// APEIRO_ALERTS) and is also served as an external plugin binary by
// cmd/plugins/notification-log. It gives an auditable trail of what CMK (or
// the webhook's alert handler) wanted to tell whom, without delivering
// anything itself.
//
// Secrets never reach the sink: the body is represented by its size, its
// SHA-256 and at most bodyPreviewBytes of text (UTF-8 safe, default 120);
// recipients are masked (e-mail local parts, URL paths and queries — where
// webhook tokens live — and all but the last two characters of anything
// else) and counted; the subject is capped at 256 bytes.
//
// Delivery semantics CMK relies on (docs/plugins.md): an undeliverable
// notification is success=false with a message, never a gRPC error —
// unspecified or disabled type, no recipients, a blank or oversized
// recipient, too many recipients, a body over maxBodyBytes, or a failed
// write (e.g. an unwritable file). Configure("") is valid (stdout, or the
// default sink chosen with WithDefaultSink). Configure swaps the settings
// atomically; writes are serialised so lines never interleave.
//
// Note for external use: plugin-sdk's go-plugin host discards an external
// plugin's stdout and stderr, so an external instance should use sink: file
// or sink: hostlog (cmd/plugins/notification-log defaults to hostlog).
package log

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	notifv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/internal/pluginlog"
)

const (
	// BuiltinName is the name under which the builtin is registered.
	BuiltinName = "APEIRO_ALERTS"
	// PluginType is the plugin-sdk type (and handshake cookie).
	PluginType = notifv1.Type

	buildInfo = `{"plugin":"apeiro-notification-log","type":"NotificationService"}`
)

// Plugin implements NotificationService and the config service.
type Plugin struct {
	notifv1.UnimplementedNotificationServiceServer
	configv1.UnimplementedConfigServer

	defaultSink Sink
	now         func() time.Time
	settings    atomic.Pointer[settings]
	pluginlog.Holder
	writeMu sync.Mutex
}

var (
	_ notifv1.NotificationServiceServer = (*Plugin)(nil)
	_ configv1.ConfigServer             = (*Plugin)(nil)
)

// Option customises New.
type Option func(*Plugin)

// WithDefaultSink sets the sink used when the YAML names none (default stdout).
func WithDefaultSink(s Sink) Option { return func(p *Plugin) { p.defaultSink = s } }

// WithClock overrides the time source (tests).
func WithClock(now func() time.Time) Option { return func(p *Plugin) { p.now = now } }

// New returns a plugin using the default settings until Configure is called.
func New(opts ...Option) *Plugin {
	p := &Plugin{defaultSink: SinkStdout, now: time.Now}
	for _, o := range opts {
		o(p)
	}
	s, err := parseConfig("", p.defaultSink)
	if err != nil {
		panic(fmt.Sprintf("notification log: invalid default sink: %v", err))
	}
	p.settings.Store(s)
	return p
}

// NewBuiltIn returns the plugin as a plugin-sdk builtin named APEIRO_ALERTS.
func NewBuiltIn() catalog.BuiltInPlugin { return NewBuiltInFrom(New()) }

// NewBuiltInFrom wraps an existing Plugin as a builtin.
func NewBuiltInFrom(p *Plugin) catalog.BuiltInPlugin {
	return catalog.MakeBuiltIn(BuiltinName,
		notifv1.NotificationServicePluginServer(p),
		configv1.ConfigServiceServer(p))
}

// Configure validates the YAML and atomically replaces the settings.
func (p *Plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	s, err := parseConfig(req.GetYamlConfiguration(), p.defaultSink)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "notification log: invalid configuration: %v", err)
	}
	p.settings.Store(s)
	bi := buildInfo
	return &configv1.ConfigureResponse{BuildInfo: &bi}, nil
}

// Record is the JSON object written per notification. Exported so consumers
// of the sink (and the contract suite) can decode it.
type Record struct {
	Time           time.Time `json:"time"`
	Event          string    `json:"event"` // always "notification"
	Type           string    `json:"type"`  // EMAIL | TEXT | WEB
	Subject        string    `json:"subject"`
	Recipients     []string  `json:"recipients"` // masked
	RecipientCount int       `json:"recipientCount"`
	BodyBytes      int       `json:"bodyBytes"`
	BodySHA256     string    `json:"bodySha256"`
	BodyPreview    string    `json:"bodyPreview,omitempty"`
	BodyTruncated  bool      `json:"bodyTruncated,omitempty"`
}

// SendNotification records one notification. Undeliverable notifications
// answer success=false with a reason; the gRPC error is reserved for a nil
// request.
func (p *Plugin) SendNotification(_ context.Context, req *notifv1.SendNotificationRequest) (*notifv1.SendNotificationResponse, error) {
	if req == nil {
		return nil, status.Error(codes.InvalidArgument, "request is required")
	}
	s := p.settings.Load()
	if reason := check(s, req); reason != "" {
		return failed(reason), nil
	}
	rec := p.record(s, req)
	if err := p.write(s, rec); err != nil {
		return failed("write to " + string(s.sink) + " sink failed: " + err.Error()), nil
	}
	return &notifv1.SendNotificationResponse{Success: true, Message: "recorded in " + string(s.sink) + " sink"}, nil
}

func failed(reason string) *notifv1.SendNotificationResponse {
	return &notifv1.SendNotificationResponse{Success: false, Message: reason}
}

// check returns why a request cannot be delivered, or "".
func check(s *settings, req *notifv1.SendNotificationRequest) string {
	t := req.GetNotificationType()
	if t == notifv1.NotificationType_NOTIFICATION_TYPE_UNSPECIFIED {
		return "notification type is unspecified"
	}
	if !s.types[t] {
		return fmt.Sprintf("notification type %s is not enabled", typeName(t))
	}
	rs := req.GetRecipients()
	if len(rs) == 0 {
		return "no recipients"
	}
	if len(rs) > s.maxRecipients {
		return fmt.Sprintf("%d recipients exceed the limit of %d", len(rs), s.maxRecipients)
	}
	for i, r := range rs {
		if strings.TrimSpace(r) == "" {
			return fmt.Sprintf("recipient %d is empty", i)
		}
		if len(r) > maxRecipientBytes {
			return fmt.Sprintf("recipient %d exceeds %d bytes", i, maxRecipientBytes)
		}
		if strings.ContainsFunc(r, unicode.IsControl) {
			return fmt.Sprintf("recipient %d contains control characters", i)
		}
	}
	if n := len(req.GetBody()); n > s.maxBody {
		return fmt.Sprintf("body of %d bytes exceeds the limit of %d bytes", n, s.maxBody)
	}
	return ""
}

func (p *Plugin) record(s *settings, req *notifv1.SendNotificationRequest) *Record {
	body := req.GetBody()
	sum := sha256.Sum256([]byte(body))
	preview, truncated := truncateUTF8(body, s.preview)
	subject, _ := truncateUTF8(req.GetSubject(), maxSubjectBytes)
	masked := make([]string, 0, len(req.GetRecipients()))
	for _, r := range req.GetRecipients() {
		masked = append(masked, MaskRecipient(r))
	}
	return &Record{
		Time:           p.now().UTC(),
		Event:          "notification",
		Type:           typeName(req.GetNotificationType()),
		Subject:        subject,
		Recipients:     masked,
		RecipientCount: len(masked),
		BodyBytes:      len(body),
		BodySHA256:     hex.EncodeToString(sum[:]),
		BodyPreview:    preview,
		BodyTruncated:  truncated,
	}
}

func (p *Plugin) write(s *settings, rec *Record) error {
	if s.sink == SinkHostLog {
		p.Log().Info("notification",
			"type", rec.Type, "subject", rec.Subject, "recipients", strings.Join(rec.Recipients, ","),
			"recipientCount", rec.RecipientCount, "bodyBytes", rec.BodyBytes, "bodySha256", rec.BodySHA256,
			"bodyPreview", rec.BodyPreview, "bodyTruncated", rec.BodyTruncated)
		return nil
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	line = append(line, '\n')

	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	var w io.Writer
	switch s.sink {
	case SinkStdout:
		w = os.Stdout // looked up per write: go-plugin replaces os.Stdout in external plugins
	case SinkStderr:
		w = os.Stderr
	case SinkFile:
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	// One Write call per line: O_APPEND keeps lines whole across processes.
	if _, err := w.Write(line); err != nil {
		return err
	}
	return nil
}

func typeName(t notifv1.NotificationType) string {
	return strings.TrimPrefix(t.String(), "NOTIFICATION_TYPE_")
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], true
}

// MaskRecipient hides the secret-bearing parts of a recipient address:
// "alice@example.org" → "a***@example.org"; "https://hooks.example/T/B/token?k=v"
// → "https://hooks.example/***"; anything else keeps its last two characters.
func MaskRecipient(r string) string {
	r = strings.TrimSpace(r)
	if u, err := url.Parse(r); err == nil && u.Scheme != "" && u.Host != "" {
		masked := u.Scheme + "://" + u.Hostname()
		if u.Port() != "" {
			masked += ":" + u.Port()
		}
		if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			masked += "/***"
		}
		return masked
	}
	if at := strings.LastIndexByte(r, '@'); at > 0 && at < len(r)-1 {
		first, _ := utf8.DecodeRuneInString(r)
		return string(first) + "***" + r[at:]
	}
	rs := []rune(r)
	if len(rs) <= 2 {
		return "***"
	}
	return "***" + string(rs[len(rs)-2:])
}
