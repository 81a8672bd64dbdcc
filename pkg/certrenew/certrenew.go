// Package certrenew keeps client certificates of platform components — Crypto (Manager) and Crypto (Migrate), which
// authenticate to the CMK Registry with mutual TLS — issued and renewed without anyone signing by hand.
//
// For each Target the Renewer loads the stored pair from its Sink (a kubernetes.io/tls Secret or PEM files), and
// when there is none, it is unusable (unparsable, key mismatch, wrong tenant/component, expired) or two thirds of
// its lifetime have passed, it generates a fresh key, builds a CSR naming the target's tenant and component in the
// pkg/tenantid scheme, has the Issuer sign it (the cert-manager plugin's SignCSR: cert-manager approval and signing),
// verifies the result and stores key and chain together. A fresh key per renewal: nothing long-lived to leak.
//
// Failures are retried with exponential backoff (RetryMin..RetryMax) while the old certificate stays in place, and
// each one emits a Kubernetes Warning Event with reason CertificateRenewalFailed on the sink's object, which the
// alerting path turns into a notification. Metrics: see NewMetrics.
package certrenew

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/apeirora/apeiro-cmk/pkg/tenantid"
)

// ReasonRenewalFailed is the Event reason of a failed renewal.
const ReasonRenewalFailed = "CertificateRenewalFailed"

// ReasonRenewed is the Event reason of a successful renewal (Normal).
const ReasonRenewed = "CertificateRenewed"

// Issuer signs a CSR for a tenant and returns the PEM chain (certmanager.Plugin satisfies it).
type Issuer interface {
	SignCSR(ctx context.Context, tenant string, csrPEM []byte, lifetime time.Duration) (string, error)
}

// Target is one certificate to keep fresh.
type Target struct {
	// Name identifies the target in metrics, logs and Events, e.g. "crypto-manager".
	Name string
	// TrustDomain, Tenant and Component make the URI SAN spiffe://<TrustDomain>/tenant/<Tenant>/component/<Component>.
	TrustDomain, Tenant, Component string
	// CommonName of the subject (the issuer may require prefix+tenant).
	CommonName string
	// Lifetime requested for each certificate.
	Lifetime time.Duration
	// RSABits > 0 generates RSA keys of that size; 0 generates ECDSA P-256.
	RSABits int
	Sink    Sink
}

func (t Target) spiffeID() (*url.URL, error) {
	return tenantid.Format(t.TrustDomain, t.Tenant, "component", t.Component)
}

// Renewer runs the renewal loop.
type Renewer struct {
	Issuer  Issuer
	Targets []Target
	// Events receives renewal outcomes (nil: none).
	Events *EventSink
	// Metrics (nil: none).
	Metrics *Metrics
	// RenewAt is the fraction of the lifetime after which a certificate is renewed; default 2/3.
	RenewAt float64
	// RetryMin/RetryMax bound the backoff after a failure; defaults 10s / 10m.
	RetryMin, RetryMax time.Duration
	// IssueTimeout bounds one issuance; default 2m.
	IssueTimeout time.Duration
	// RecheckEvery is the longest the loop waits before it looks at a target again, even when the certificate is not
	// due: a deleted or damaged Secret or file is repaired within this time (deleting it is how an operator forces a
	// renewal). Default 1m; each look is one read of the sink.
	RecheckEvery time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Log receives one line per renewal or failure (nil: none).
	Log func(msg string, kv ...any)
}

func (r *Renewer) defaults() {
	if r.RenewAt <= 0 || r.RenewAt >= 1 {
		r.RenewAt = 2.0 / 3
	}
	if r.RetryMin <= 0 {
		r.RetryMin = 10 * time.Second
	}
	if r.RetryMax < r.RetryMin {
		r.RetryMax = max(10*time.Minute, r.RetryMin)
	}
	if r.IssueTimeout <= 0 {
		r.IssueTimeout = 2 * time.Minute
	}
	if r.RecheckEvery <= 0 {
		r.RecheckEvery = time.Minute
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Log == nil {
		r.Log = func(string, ...any) {}
	}
}

// Validate checks the targets before Run.
func (r *Renewer) Validate() error {
	if r.Issuer == nil {
		return errors.New("certrenew: no issuer")
	}
	seen := map[string]bool{}
	for _, t := range r.Targets {
		switch {
		case t.Name == "" || seen[t.Name]:
			return fmt.Errorf("certrenew: target name %q empty or duplicate", t.Name)
		case t.Sink == nil:
			return fmt.Errorf("certrenew: target %s has no sink", t.Name)
		case t.Lifetime < time.Hour:
			return fmt.Errorf("certrenew: target %s: lifetime %s is shorter than 1h", t.Name, t.Lifetime)
		case t.RSABits != 0 && (t.RSABits < 2048 || t.RSABits > 8192):
			return fmt.Errorf("certrenew: target %s: RSA key size %d not in 2048..8192", t.Name, t.RSABits)
		case t.CommonName == "":
			return fmt.Errorf("certrenew: target %s has no common name", t.Name)
		}
		if _, err := t.spiffeID(); err != nil {
			return fmt.Errorf("certrenew: target %s: %w", t.Name, err)
		}
		seen[t.Name] = true
	}
	return nil
}

// Run renews every target until ctx ends. It returns only a configuration error, or nil when ctx is done.
func (r *Renewer) Run(ctx context.Context) error {
	r.defaults()
	if err := r.Validate(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, t := range r.Targets {
		wg.Go(func() { r.loop(ctx, t) })
	}
	wg.Wait()
	return nil
}

func (r *Renewer) loop(ctx context.Context, t Target) {
	backoff := r.RetryMin
	for {
		next, err := r.Check(ctx, t)
		wait := min(time.Until(next), r.RecheckEvery)
		if err != nil {
			wait = backoff
			backoff = min(2*backoff, r.RetryMax)
		} else {
			backoff = r.RetryMin
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, time.Second)):
		}
	}
}

// Check renews t if it is due and returns when it should be looked at next. A failure is reported (Event, metric,
// log) and returned; the stored pair is untouched.
func (r *Renewer) Check(ctx context.Context, t Target) (time.Time, error) {
	r.defaults()
	now := r.Now()
	cert, reason := r.current(ctx, t)
	if cert != nil && reason == "" {
		due := renewalTime(cert, r.RenewAt)
		if now.Before(due) {
			r.Metrics.observe(t.Name, cert, due)
			return due, nil
		}
		reason = fmt.Sprintf("%.0f%% of its lifetime has passed", r.RenewAt*100)
	}
	newCert, err := r.renew(ctx, t)
	if err != nil {
		err = fmt.Errorf("renew %s certificate (%s) in %s: %w", t.Name, reason, t.Sink, err)
		r.Metrics.result(t.Name, "failure")
		r.Log("certificate renewal failed", "target", t.Name, "error", err.Error())
		msg := err.Error()
		if cert != nil {
			msg += fmt.Sprintf("; the current certificate expires %s", cert.NotAfter.UTC().Format(time.RFC3339))
		}
		r.Events.emit(ctx, t, "Warning", ReasonRenewalFailed, msg)
		return now, err
	}
	due := renewalTime(newCert, r.RenewAt)
	r.Metrics.result(t.Name, "success")
	r.Metrics.observe(t.Name, newCert, due)
	r.Log("certificate renewed", "target", t.Name, "reason", reason, "serial", newCert.SerialNumber.Text(16), "notAfter", newCert.NotAfter)
	r.Events.emit(ctx, t, "Normal", ReasonRenewed, fmt.Sprintf("%s certificate renewed (%s); valid until %s", t.Name, reason,
		newCert.NotAfter.UTC().Format(time.RFC3339)))
	return due, nil
}

func renewalTime(c *x509.Certificate, fraction float64) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(time.Duration(float64(life) * fraction))
}

// current loads and checks the stored pair; reason says why it must be replaced ("" = usable).
func (r *Renewer) current(ctx context.Context, t Target) (*x509.Certificate, string) {
	certPEM, keyPEM, err := t.Sink.Load(ctx)
	if errors.Is(err, ErrNotFound) {
		return nil, "none issued yet"
	}
	if err != nil {
		return nil, "stored certificate unreadable: " + err.Error()
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, "stored pair unusable: " + err.Error()
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, "stored certificate unparsable"
	}
	if err := matches(leaf, t); err != nil {
		return nil, "stored certificate does not match the target: " + err.Error()
	}
	if !r.Now().Before(leaf.NotAfter) {
		return leaf, "expired"
	}
	return leaf, ""
}

func matches(leaf *x509.Certificate, t Target) error {
	want, err := t.spiffeID()
	if err != nil {
		return err
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want.String() {
		return fmt.Errorf("URI SANs %v, want %s", leaf.URIs, want)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return errors.New("no clientAuth EKU")
	}
	return nil
}

func (r *Renewer) renew(ctx context.Context, t Target) (*x509.Certificate, error) {
	key, keyPEM, err := newKey(t.RSABits)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	id, err := t.spiffeID()
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: t.CommonName}, URIs: []*url.URL{id}}, key)
	if err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	ictx, cancel := context.WithTimeout(ctx, r.IssueTimeout)
	defer cancel()
	chain, err := r.Issuer.SignCSR(ictx, t.Tenant, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), t.Lifetime)
	if err != nil {
		return nil, fmt.Errorf("issue: %w", err)
	}
	pair, err := tls.X509KeyPair([]byte(chain), keyPEM)
	if err != nil {
		return nil, fmt.Errorf("issued certificate does not fit the new key: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	if err := matches(leaf, t); err != nil {
		return nil, fmt.Errorf("issued certificate: %w", err)
	}
	if err := t.Sink.Store(ctx, []byte(chain), keyPEM); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return leaf, nil
}

func newKey(rsaBits int) (crypto.Signer, []byte, error) {
	var (
		key crypto.Signer
		err error
	)
	if rsaBits > 0 {
		key, err = rsa.GenerateKey(rand.Reader, rsaBits)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// lastCertPEM returns the last certificate of a chain with more than one (the CA), else nil.
func lastCertPEM(chain []byte) []byte {
	var blocks []*pem.Block
	rest := chain
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			blocks = append(blocks, b)
		}
	}
	if len(blocks) < 2 {
		return nil
	}
	var buf bytes.Buffer
	_ = pem.Encode(&buf, blocks[len(blocks)-1])
	return buf.Bytes()
}
