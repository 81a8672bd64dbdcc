package certrenew

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/pkg/tenantid"
)

const maxConfigBytes = 64 << 10

// Config is the YAML of a renewal deployment (the webhook's --cert-renew-config):
//
//	issuer: |                       # the cert-manager issuer's YAML (docs/certificates.md), verbatim
//	  namespace: cmk-certificates
//	  issuerRef: {name: apeiro-platform-ca, kind: ClusterIssuer}
//	  trustDomain: apeiro.local
//	  tenantCNPrefix: cmk-
//	trustDomain: apeiro.local       # must equal the issuer's
//	tenant: platform                # the tenant the components act for
//	commonNamePrefix: cmk-          # CN = prefix + tenant (the issuer's tenantCNPrefix)
//	eventNamespace: cmk             # for Events of file targets
//	recheckInterval: 1m             # look at every target at least this often (repairs a deleted Secret); 1s..1h
//	retryInterval: 10s              # first retry after a failure (doubles up to 10m); 1s..10m
//	targets:
//	  - name: crypto-manager
//	    lifetime: 720h              # ≥ 1h; renewed after 2/3
//	    rsaBits: 0                  # 0 = ECDSA P-256
//	    secret: {namespace: cmk, name: crypto-manager-client-tls}
//	  - name: crypto-migrate
//	    lifetime: 720h
//	    files: {cert: /var/run/cmk/migrate/tls.crt, key: /var/run/cmk/migrate/tls.key}
type Config struct {
	Issuer           string         `json:"issuer"`
	TrustDomain      string         `json:"trustDomain"`
	Tenant           string         `json:"tenant"`
	CommonNamePrefix string         `json:"commonNamePrefix,omitempty"`
	EventNamespace   string         `json:"eventNamespace,omitempty"`
	RecheckInterval  string         `json:"recheckInterval,omitempty"`
	RetryInterval    string         `json:"retryInterval,omitempty"`
	Targets          []TargetConfig `json:"targets"`
}

// TargetConfig is one target; the component segment of its SPIFFE ID is its name.
type TargetConfig struct {
	Name     string `json:"name"`
	Lifetime string `json:"lifetime"`
	RSABits  int    `json:"rsaBits,omitempty"`
	Secret   *struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"secret,omitempty"`
	Files *struct {
		Cert string `json:"cert"`
		Key  string `json:"key"`
	} `json:"files,omitempty"`
}

// LoadConfig reads and decodes a config file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certrenew: %w", err)
	}
	return ParseConfig(b)
}

// ParseConfig decodes and checks the YAML (unknown fields rejected); it touches neither files nor the network.
func ParseConfig(b []byte) (*Config, error) {
	if len(b) > maxConfigBytes {
		return nil, fmt.Errorf("certrenew: configuration exceeds %d bytes", maxConfigBytes)
	}
	c := &Config{}
	if err := yaml.UnmarshalStrict(b, c); err != nil {
		return nil, fmt.Errorf("certrenew: decode YAML: %w", err)
	}
	if strings.TrimSpace(c.Issuer) == "" {
		return nil, errors.New("certrenew: issuer (the cert-manager issuer YAML) is required")
	}
	if _, err := tenantid.Format(c.TrustDomain, c.Tenant); err != nil {
		return nil, fmt.Errorf("certrenew: trustDomain/tenant: %w", err)
	}
	for _, d := range []struct {
		name, v  string
		min, max time.Duration
	}{{"recheckInterval", c.RecheckInterval, time.Second, time.Hour}, {"retryInterval", c.RetryInterval, time.Second, 10 * time.Minute}} {
		if d.v == "" {
			continue
		}
		if v, err := time.ParseDuration(d.v); err != nil || v < d.min || v > d.max {
			return nil, fmt.Errorf("certrenew: %s %q must be a duration in %s..%s", d.name, d.v, d.min, d.max)
		}
	}
	if len(c.Targets) == 0 {
		return nil, errors.New("certrenew: no targets")
	}
	for i, t := range c.Targets {
		if err := tenantid.ValidateTenant(t.Name); err != nil {
			return nil, fmt.Errorf("certrenew: targets[%d].name: %w", i, err)
		}
		if (t.Secret == nil) == (t.Files == nil) {
			return nil, fmt.Errorf("certrenew: target %s: set exactly one of secret or files", t.Name)
		}
		if t.Secret != nil && (t.Secret.Namespace == "" || t.Secret.Name == "") {
			return nil, fmt.Errorf("certrenew: target %s: secret needs namespace and name", t.Name)
		}
		if t.Files != nil && (t.Files.Cert == "" || t.Files.Key == "" || t.Files.Cert == t.Files.Key) {
			return nil, fmt.Errorf("certrenew: target %s: files needs distinct cert and key paths", t.Name)
		}
		if _, err := time.ParseDuration(t.Lifetime); err != nil {
			return nil, fmt.Errorf("certrenew: target %s: lifetime: %w", t.Name, err)
		}
	}
	return c, nil
}

// BuildTargets builds the targets (Secrets through cs) and checks them like Renewer.Validate.
func (c *Config) BuildTargets(cs kubernetes.Interface) ([]Target, error) {
	var out []Target
	for _, tc := range c.Targets {
		life, _ := time.ParseDuration(tc.Lifetime)
		t := Target{Name: tc.Name, TrustDomain: c.TrustDomain, Tenant: c.Tenant, Component: tc.Name,
			CommonName: c.CommonNamePrefix + c.Tenant, Lifetime: life, RSABits: tc.RSABits}
		if tc.Secret != nil {
			if cs == nil {
				return nil, fmt.Errorf("certrenew: target %s writes a Secret but there is no API client", tc.Name)
			}
			t.Sink = NewSecretSink(cs, tc.Secret.Namespace, tc.Secret.Name)
		} else {
			fs := &FileSink{CertFile: tc.Files.Cert, KeyFile: tc.Files.Key}
			fs.Event.Kind, fs.Event.APIVersion, fs.Event.Namespace, fs.Event.Name = "ConfigMap", "v1", c.EventNamespace, "cmk-certrenew-"+tc.Name
			t.Sink = fs
		}
		out = append(out, t)
	}
	r := &Renewer{Issuer: noIssuer{}, Targets: out}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return out, nil
}

type noIssuer struct{ Issuer }

// Apply sets the loop's timing from the configuration (defaults where unset; ParseConfig has checked the values).
func (c *Config) Apply(r *Renewer) {
	if d, err := time.ParseDuration(c.RecheckInterval); err == nil {
		r.RecheckEvery = d
	}
	if d, err := time.ParseDuration(c.RetryInterval); err == nil {
		r.RetryMin = d
	}
}
