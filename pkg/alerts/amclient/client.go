// Package amclient posts alerts to Alertmanager's v2 API (POST /api/v2/alerts) and reads them back
// (GET /api/v2/alerts) with plain net/http and JSON. Both the alert handler of the webhook server and the
// Alertmanager notification plugin use it.
//
// The Alertmanager URL comes from the operator (a flag or the plugin's YAML), never from a tenant, and names an
// in-cluster service by design; this is the one HTTP client in the project that may reach private addresses, and
// it is listed with that reason in netguard's client allowlist.
package amclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Alert is one alert in Alertmanager's v2 "postableAlert" shape.
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitempty"`
	EndsAt       time.Time         `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Poster is the one call the alert handler and the plugin make.
type Poster interface {
	PostAlerts(ctx context.Context, alerts []Alert) error
}

// Options configures New.
type Options struct {
	// URL is Alertmanager's base URL, e.g. http://alertmanager.monitoring:9093 (a path prefix is kept).
	URL string
	// Timeout bounds one request (default 10 s).
	Timeout time.Duration
	// CAFile is a PEM bundle for an https Alertmanager with a private CA.
	CAFile string
	// BearerTokenFile, when set, is read per request and sent as Authorization: Bearer (for an authenticating proxy).
	BearerTokenFile string
}

// Client talks to one Alertmanager.
type Client struct {
	base      *url.URL
	http      *http.Client
	tokenFile string
}

// maxErrorBody bounds how much of an error answer is read (and quoted in the error).
const maxErrorBody = 4 << 10

// New validates the options; it does not contact Alertmanager (a missing Alertmanager must not stop a process
// from starting).
func New(o Options) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(o.URL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("alertmanager URL %q must be an absolute http(s) URL", o.URL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("alertmanager URL must not carry user information, a query or a fragment")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading alertmanager CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("alertmanager CA file %s holds no PEM certificate", o.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	return &Client{
		base:      u,
		tokenFile: o.BearerTokenFile,
		http: &http.Client{
			Timeout: o.Timeout,
			Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				TLSClientConfig:       tlsConf,
				TLSHandshakeTimeout:   o.Timeout,
				ResponseHeaderTimeout: o.Timeout,
				MaxIdleConnsPerHost:   4,
				IdleConnTimeout:       90 * time.Second,
			},
			// Alertmanager does not redirect its API; a redirect means a misconfigured URL.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// URL is the base URL (for messages; it carries no secret).
func (c *Client) URL() string { return c.base.String() }

// StatusError is a non-2xx answer.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("alertmanager answered %d: %s", e.Code, e.Body)
}

// Retryable reports whether err is worth retrying: transport errors, 5xx and 429. A 4xx means Alertmanager
// refused the alerts themselves and retrying cannot help.
func Retryable(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code >= 500 || se.Code == http.StatusTooManyRequests
	}
	return err != nil
}

// PostAlerts sends alerts in one request.
func (c *Client) PostAlerts(ctx context.Context, alerts []Alert) error {
	body, err := json.Marshal(alerts)
	if err != nil {
		return fmt.Errorf("encoding alerts: %w", err)
	}
	req, err := c.request(ctx, http.MethodPost, "/api/v2/alerts", nil, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("posting %d alerts to %s: %w", len(alerts), c.base.Redacted(), err)
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody)) // lets the connection be reused
	return nil
}

// Gettable is an alert as Alertmanager lists it (the fields tests and operators read).
type Gettable struct {
	Alert
	Fingerprint string `json:"fingerprint"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
	Receivers []struct {
		Name string `json:"name"`
	} `json:"receivers"`
}

// GetAlerts lists alerts matching the Alertmanager filter expressions (e.g. `alertname="X"`).
func (c *Client) GetAlerts(ctx context.Context, filters ...string) ([]Gettable, error) {
	q := url.Values{}
	for _, f := range filters {
		q.Add("filter", f)
	}
	req, err := c.request(ctx, http.MethodGet, "/api/v2/alerts", q, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("listing alerts at %s: %w", c.base.Redacted(), err)
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return nil, err
	}
	var out []Gettable
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("decoding alert list: %w", err)
	}
	return out, nil
}

func (c *Client) request(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("building alertmanager request: %w", err)
	}
	if c.tokenFile != "" {
		tok, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("reading alertmanager bearer token file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	return req, nil
}

func checkStatus(resp *http.Response) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return &StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(b))}
}
