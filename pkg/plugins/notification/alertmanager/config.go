package alertmanager

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/pkg/alerts/amclient"
)

// Config is the YAML accepted by Configure. Unknown fields are rejected.
//
//	url: http://alertmanager.monitoring:9093   # required; Alertmanager's base URL; ${VAR} and ${VAR:-default} expand
//	timeout: 5s                                 # per request (default 5s, at most 60s)
//	caFile: /etc/apeiro/alertmanager/ca.crt     # PEM CA for an https Alertmanager
//	bearerTokenFile: /var/run/secrets/...       # sent as Authorization: Bearer
//	alertname: CMKNotification                  # alertname label of every alert
//	severity: warning                           # severity label (info | warning | critical)
//	resolveAfter: 5m                            # endsAt = startsAt + resolveAfter (default 5m)
//	generatorURL: https://cmk.example.org/      # optional link back to CMK
//	labels: {cluster: eu-1}                     # extra static labels
//	maxBodyBytes: 65536                         # larger bodies are refused (success=false)
type Config struct {
	URL             string            `json:"url"`
	Timeout         string            `json:"timeout,omitempty"`
	CAFile          string            `json:"caFile,omitempty"`
	BearerTokenFile string            `json:"bearerTokenFile,omitempty"`
	Alertname       string            `json:"alertname,omitempty"`
	Severity        string            `json:"severity,omitempty"`
	ResolveAfter    string            `json:"resolveAfter,omitempty"`
	GeneratorURL    string            `json:"generatorURL,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	MaxBodyBytes    *int              `json:"maxBodyBytes,omitempty"`
}

type settings struct {
	client       *amclient.Client
	alertname    string
	severity     string
	resolveAfter time.Duration
	generatorURL string
	labels       map[string]string
	maxBody      int
}

const (
	defaultMaxBodyBytes = 64 << 10
	maxLabels           = 32
)

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// reserved labels are set per notification and cannot be overridden by static labels.
var reserved = map[string]bool{"alertname": true, "severity": true, "notification_type": true, "subject_hash": true}

func parseConfig(raw string) (*settings, error) {
	cfg := &Config{}
	if strings.TrimSpace(raw) == "" {
		return nil, fmt.Errorf("url is required")
	}
	if err := yaml.UnmarshalStrict([]byte(raw), cfg); err != nil {
		return nil, fmt.Errorf("decode YAML: %w", err)
	}
	timeout, err := duration(cfg.Timeout, 5*time.Second, time.Minute, "timeout")
	if err != nil {
		return nil, err
	}
	resolve, err := duration(cfg.ResolveAfter, 5*time.Minute, 24*time.Hour, "resolveAfter")
	if err != nil {
		return nil, err
	}
	c, err := amclient.New(amclient.Options{URL: expandEnv(cfg.URL), Timeout: timeout, CAFile: cfg.CAFile, BearerTokenFile: cfg.BearerTokenFile})
	if err != nil {
		return nil, err
	}
	s := &settings{client: c, alertname: cfg.Alertname, severity: cfg.Severity, resolveAfter: resolve,
		generatorURL: cfg.GeneratorURL, labels: map[string]string{}, maxBody: defaultMaxBodyBytes}
	if s.alertname == "" {
		s.alertname = "CMKNotification"
	}
	if s.severity == "" {
		s.severity = "warning"
	}
	switch s.severity {
	case "info", "warning", "critical":
	default:
		return nil, fmt.Errorf("severity %q must be info, warning or critical", s.severity)
	}
	if s.generatorURL != "" {
		if u, err := url.Parse(s.generatorURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("generatorURL %q must be an absolute http(s) URL", s.generatorURL)
		}
	}
	if len(cfg.Labels) > maxLabels {
		return nil, fmt.Errorf("at most %d labels", maxLabels)
	}
	for k, v := range cfg.Labels {
		if !labelName.MatchString(k) || reserved[k] {
			return nil, fmt.Errorf("label name %q is invalid or reserved", k)
		}
		if len(v) > 256 {
			return nil, fmt.Errorf("label %q: value longer than 256 bytes", k)
		}
		s.labels[k] = v
	}
	if cfg.MaxBodyBytes != nil {
		if *cfg.MaxBodyBytes < 1 || *cfg.MaxBodyBytes > 1<<20 {
			return nil, fmt.Errorf("maxBodyBytes must be between 1 and %d", 1<<20)
		}
		s.maxBody = *cfg.MaxBodyBytes
	}
	return s, nil
}

// expandEnv expands ${VAR} and ${VAR:-default} (default when VAR is unset or empty), so one profile serves every
// environment.
func expandEnv(s string) string {
	return os.Expand(s, func(name string) string {
		if v, def, ok := strings.Cut(name, ":-"); ok {
			if e := os.Getenv(v); e != "" {
				return e
			}
			return def
		}
		return os.Getenv(name)
	})
}

func duration(s string, def, max time.Duration, name string) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > max {
		return 0, fmt.Errorf("%s %q must be a positive duration up to %s", name, s, max)
	}
	return d, nil
}
