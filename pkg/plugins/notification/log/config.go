package log

import (
	"fmt"
	"path/filepath"
	"strings"

	notifv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"
	"sigs.k8s.io/yaml"
)

// Sink is where notification records go.
type Sink string

const (
	// SinkStdout writes JSON lines to the process's standard output.
	SinkStdout Sink = "stdout"
	// SinkStderr writes JSON lines to the process's standard error.
	SinkStderr Sink = "stderr"
	// SinkFile appends JSON lines to Config.Path (created 0600 if missing,
	// opened per record so external log rotation needs no signal).
	SinkFile Sink = "file"
	// SinkHostLog emits each record through the logger plugin-sdk hands the
	// plugin (api.NeedsLogger). For an external plugin that logger reaches
	// the host's log; it is subject to the host's logLevel for the plugin
	// (records are logged at Info).
	SinkHostLog Sink = "hostlog"
)

const (
	defaultMaxBodyBytes     = 64 << 10
	defaultBodyPreviewBytes = 120
	defaultMaxRecipients    = 100
	maxSubjectBytes         = 256
	maxRecipientBytes       = 512
	maxPreviewLimit         = 4096
)

// Config is the YAML accepted by Configure. Unknown fields are rejected;
// every field is optional.
//
//	sink: file                 # stdout | stderr | file | hostlog
//	path: /var/log/apeiro/notifications.jsonl   # absolute; required for sink: file
//	maxBodyBytes: 65536        # larger bodies are refused (success=false)
//	bodyPreviewBytes: 120      # body bytes copied into the record; 0 = none
//	maxRecipients: 100         # more recipients are refused (success=false)
//	types: [EMAIL, TEXT, WEB]  # accepted notification types (default: all three)
type Config struct {
	Sink             Sink     `json:"sink,omitempty"`
	Path             string   `json:"path,omitempty"`
	MaxBodyBytes     *int     `json:"maxBodyBytes,omitempty"`
	BodyPreviewBytes *int     `json:"bodyPreviewBytes,omitempty"`
	MaxRecipients    *int     `json:"maxRecipients,omitempty"`
	Types            []string `json:"types,omitempty"`
}

// settings is a validated Config with defaults applied.
type settings struct {
	sink          Sink
	path          string
	maxBody       int
	preview       int
	maxRecipients int
	types         map[notifv1.NotificationType]bool
}

// parseConfig decodes and validates the YAML; defaultSink applies when the
// YAML names none.
func parseConfig(raw string, defaultSink Sink) (*settings, error) {
	cfg := &Config{}
	if strings.TrimSpace(raw) != "" {
		if err := yaml.UnmarshalStrict([]byte(raw), cfg); err != nil {
			return nil, fmt.Errorf("decode YAML: %w", err)
		}
	}
	s := &settings{
		sink:          cfg.Sink,
		path:          cfg.Path,
		maxBody:       intOr(cfg.MaxBodyBytes, defaultMaxBodyBytes),
		preview:       intOr(cfg.BodyPreviewBytes, defaultBodyPreviewBytes),
		maxRecipients: intOr(cfg.MaxRecipients, defaultMaxRecipients),
		types:         map[notifv1.NotificationType]bool{},
	}
	if s.sink == "" {
		s.sink = defaultSink
	}
	switch s.sink {
	case SinkStdout, SinkStderr, SinkHostLog:
		if s.path != "" {
			return nil, fmt.Errorf("path is only valid with sink: file")
		}
	case SinkFile:
		if s.path == "" {
			return nil, fmt.Errorf("sink: file requires path")
		}
		if !filepath.IsAbs(s.path) {
			return nil, fmt.Errorf("path %q must be absolute", s.path)
		}
		s.path = filepath.Clean(s.path)
	default:
		return nil, fmt.Errorf("unknown sink %q (want stdout, stderr, file or hostlog)", s.sink)
	}
	if s.maxBody < 1 {
		return nil, fmt.Errorf("maxBodyBytes must be positive")
	}
	if s.preview < 0 || s.preview > maxPreviewLimit {
		return nil, fmt.Errorf("bodyPreviewBytes must be between 0 and %d", maxPreviewLimit)
	}
	if s.maxRecipients < 1 {
		return nil, fmt.Errorf("maxRecipients must be positive")
	}
	if len(cfg.Types) == 0 {
		cfg.Types = []string{"EMAIL", "TEXT", "WEB"}
	}
	for _, t := range cfg.Types {
		v, ok := notifv1.NotificationType_value["NOTIFICATION_TYPE_"+strings.ToUpper(t)]
		if !ok || v == int32(notifv1.NotificationType_NOTIFICATION_TYPE_UNSPECIFIED) {
			return nil, fmt.Errorf("unknown notification type %q (want EMAIL, TEXT or WEB)", t)
		}
		s.types[notifv1.NotificationType(v)] = true
	}
	return s, nil
}

func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}
