package certrenew

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
)

// localIssuer signs CSRs with an in-memory CA, copying subject and URIs (what the cert-manager CA issuer does).
type localIssuer struct {
	mu    sync.Mutex
	ca    *x509.Certificate
	key   *ecdsa.PrivateKey
	now   func() time.Time
	fail  error
	calls int
	uri   string // overrides the URI SAN when set (a misbehaving issuer)
}

func newLocalIssuer(t testing.TB, now func() time.Time) *localIssuer {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: now().Add(-time.Hour),
		NotAfter: now().AddDate(2, 0, 0), KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &localIssuer{ca: ca, key: key, now: now}
}

func (l *localIssuer) SignCSR(_ context.Context, _ string, csrPEM []byte, lifetime time.Duration) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.fail != nil {
		return "", l.fail
	}
	b, _ := pem.Decode(csrPEM)
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(l.calls + 1)), Subject: csr.Subject, URIs: csr.URIs,
		NotBefore: l.now(), NotAfter: l.now().Add(lifetime), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if l.uri != "" {
		tmpl.URIs[0].Path = l.uri
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, l.ca, csr.PublicKey, l.key)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: l.ca.Raw})), nil
}

type events struct {
	mu  sync.Mutex
	evs []*corev1.Event
}

func (e *events) CreateEvent(_ context.Context, ev *corev1.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
	return nil
}

func (e *events) reasons() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.evs {
		out = append(out, ev.Reason)
	}
	return out
}

type fixture struct {
	now    time.Time
	issuer *localIssuer
	ev     *events
	reg    *prometheus.Registry
	r      *Renewer
	target Target
	dir    string
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), ev: &events{}, reg: prometheus.NewRegistry(), dir: t.TempDir()}
	clock := func() time.Time { return f.now }
	f.issuer = newLocalIssuer(t, clock)
	m, err := NewMetrics(f.reg)
	if err != nil {
		t.Fatal(err)
	}
	f.target = Target{Name: "crypto-manager", TrustDomain: "apeiro.example", Tenant: "platform", Component: "crypto-manager",
		CommonName: "cmk-platform", Lifetime: 30 * 24 * time.Hour,
		Sink: &FileSink{CertFile: filepath.Join(f.dir, "tls.crt"), KeyFile: filepath.Join(f.dir, "tls.key"),
			Event: corev1.ObjectReference{Kind: "Deployment", APIVersion: "apps/v1", Namespace: "cmk", Name: "crypto-manager"}}}
	f.r = &Renewer{Issuer: f.issuer, Targets: []Target{f.target}, Events: &EventSink{Client: f.ev}, Metrics: m, Now: clock}
	return f
}

func (f *fixture) leaf(t *testing.T) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(p.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRenewsAtTwoThirds(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	next, err := f.r.Check(ctx, f.target)
	if err != nil {
		t.Fatal(err)
	}
	first := f.leaf(t)
	if want := f.now.Add(20 * 24 * time.Hour); !next.Equal(want) {
		t.Fatalf("next check %s, want %s (2/3 of 30 days)", next, want)
	}
	if got := first.URIs[0].String(); got != "spiffe://apeiro.example/tenant/platform/component/crypto-manager" {
		t.Fatalf("URI SAN %s", got)
	}
	info, _ := os.Stat(filepath.Join(f.dir, "tls.key"))
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", info.Mode())
	}

	f.now = f.now.Add(19 * 24 * time.Hour) // before 2/3: nothing happens
	if _, err := f.r.Check(ctx, f.target); err != nil || f.issuer.calls != 1 || !f.leaf(t).Equal(first) {
		t.Fatalf("renewed too early (calls %d, err %v)", f.issuer.calls, err)
	}
	f.now = f.now.Add(24*time.Hour + time.Second) // past 2/3
	if _, err := f.r.Check(ctx, f.target); err != nil {
		t.Fatal(err)
	}
	second := f.leaf(t)
	if second.Equal(first) || f.issuer.calls != 2 {
		t.Fatal("not renewed after 2/3 of the lifetime")
	}
	if metric(t, f.reg, "apeiro_certrenew_renewals_total", "success") != 2 ||
		metric(t, f.reg, "apeiro_certrenew_certificate_not_after_seconds", "") != float64(second.NotAfter.Unix()) {
		t.Fatal("metrics not updated")
	}
	if got := strings.Join(f.ev.reasons(), ","); got != "CertificateRenewed,CertificateRenewed" {
		t.Fatalf("events %s", got)
	}
}

func TestFailureKeepsOldAndEmitsEvent(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.r.Check(ctx, f.target); err != nil {
		t.Fatal(err)
	}
	first := f.leaf(t)
	f.now = f.now.Add(25 * 24 * time.Hour)
	f.issuer.fail = errors.New("rpc error: code = PermissionDenied desc = certmanager: CertificateRequest x was denied")
	if _, err := f.r.Check(ctx, f.target); err == nil || !strings.Contains(err.Error(), "was denied") {
		t.Fatalf("err = %v", err)
	}
	if !f.leaf(t).Equal(first) {
		t.Fatal("a failed renewal replaced the stored certificate")
	}
	evs := f.ev.evs
	last := evs[len(evs)-1]
	if last.Reason != ReasonRenewalFailed || last.Type != "Warning" || last.InvolvedObject.Name != "crypto-manager" ||
		last.Namespace != "cmk" || !strings.Contains(last.Message, "was denied") || !strings.Contains(last.Message, "current certificate expires") {
		t.Fatalf("event = %+v", last)
	}
	if metric(t, f.reg, "apeiro_certrenew_renewals_total", "failure") != 1 {
		t.Fatal("failure not counted")
	}
}

func TestReplacesUnusableStoredPairs(t *testing.T) {
	for name, corrupt := range map[string]func(f *fixture){
		"garbage cert": func(f *fixture) { _ = os.WriteFile(filepath.Join(f.dir, "tls.crt"), []byte("garbage"), 0o600) },
		"key mismatch": func(f *fixture) {
			_, k, _ := newKey(0)
			_ = os.WriteFile(filepath.Join(f.dir, "tls.key"), k, 0o600)
		},
		"expired": func(f *fixture) { f.now = f.now.Add(31 * 24 * time.Hour) },
		"other tenant": func(f *fixture) {
			f.target.Tenant = "globex"
			f.r.Targets[0].Tenant = "globex"
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			if _, err := f.r.Check(context.Background(), f.target); err != nil {
				t.Fatal(err)
			}
			corrupt(f)
			if _, err := f.r.Check(context.Background(), f.target); err != nil {
				t.Fatal(err)
			}
			if f.issuer.calls != 2 {
				t.Fatalf("issuer called %d times, want a replacement", f.issuer.calls)
			}
		})
	}
}

func TestRejectsWrongIssuedCertificate(t *testing.T) {
	f := newFixture(t)
	f.issuer.uri = "/tenant/globex/component/crypto-manager"
	_, err := f.r.Check(context.Background(), f.target)
	if err == nil || !strings.Contains(err.Error(), "issued certificate: URI SANs") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "tls.crt")); !os.IsNotExist(err) {
		t.Fatal("stored a certificate for the wrong tenant")
	}
}

func TestValidate(t *testing.T) {
	f := newFixture(t)
	for name, mut := range map[string]func(*Target){
		"bad tenant":    func(t *Target) { t.Tenant = "Not_A_Tenant" },
		"short life":    func(t *Target) { t.Lifetime = time.Minute },
		"no sink":       func(t *Target) { t.Sink = nil },
		"weak rsa":      func(t *Target) { t.RSABits = 1024 },
		"no name":       func(t *Target) { t.Name = "" },
		"no CN":         func(t *Target) { t.CommonName = "" },
		"bad component": func(t *Target) { t.Component = "a/b" },
	} {
		tg := f.target
		mut(&tg)
		r := &Renewer{Issuer: f.issuer, Targets: []Target{tg}}
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := (&Renewer{Issuer: f.issuer, Targets: []Target{f.target, f.target}}).Validate(); err == nil {
		t.Error("duplicate names accepted")
	}
}

func TestRunStopsWithContext(t *testing.T) {
	f := newFixture(t)
	f.r.Now = nil // real clock
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := f.r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if f.issuer.calls != 1 {
		t.Fatalf("issuer calls %d", f.issuer.calls)
	}
}

// metric reads one sample of target crypto-manager (and result, when given) from the registry.
func metric(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := true
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() != result {
					ok = false
				}
			}
			if ok {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

const sampleConfig = `issuer: |
  namespace: cmk-certificates
  issuerRef: {name: platform-ca, kind: ClusterIssuer}
  trustDomain: apeiro.local
  tenantCNPrefix: cmk-
trustDomain: apeiro.local
tenant: platform
commonNamePrefix: cmk-
eventNamespace: cmk
targets:
  - name: crypto-manager
    lifetime: 720h
    secret: {namespace: cmk, name: crypto-manager-client-tls}
  - name: crypto-migrate
    lifetime: 720h
    rsaBits: 3072
    files: {cert: /tmp/x/tls.crt, key: /tmp/x/tls.key}
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.BuildTargets(nil); err == nil || !strings.Contains(err.Error(), "no API client") {
		t.Fatalf("secret target without client: %v", err)
	}
	c.Targets = c.Targets[1:]
	ts, err := c.BuildTargets(nil)
	if err != nil || len(ts) != 1 || ts[0].CommonName != "cmk-platform" || ts[0].Sink.Ref().Namespace != "cmk" {
		t.Fatalf("targets %+v, %v", ts, err)
	}
	for name, bad := range map[string]string{
		"unknown field":  sampleConfig + "foo: 1\n",
		"no issuer":      strings.Replace(sampleConfig, "issuer: |", "issuerX: |", 1),
		"bad tenant":     strings.Replace(sampleConfig, "tenant: platform", "tenant: Platform_1", 1),
		"both sinks":     strings.Replace(sampleConfig, "    rsaBits: 3072\n", "    rsaBits: 3072\n    secret: {namespace: a, name: b}\n", 1),
		"bad lifetime":   strings.Replace(sampleConfig, "lifetime: 720h", "lifetime: forever", 1),
		"bad name":       strings.Replace(sampleConfig, "name: crypto-manager", "name: Crypto/Manager", 1),
		"same key files": strings.Replace(sampleConfig, "key: /tmp/x/tls.key", "key: /tmp/x/tls.crt", 1),
		"huge":           strings.Repeat("#", maxConfigBytes+1),
		"recheck 0":      sampleConfig + "recheckInterval: 0s\n",
		"recheck 2h":     sampleConfig + "recheckInterval: 2h\n",
		"retry garbage":  sampleConfig + "retryInterval: soon\n",
		"retry 1ms":      sampleConfig + "retryInterval: 1ms\n",
	} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestConfigIntervals(t *testing.T) {
	c, err := ParseConfig([]byte(sampleConfig + "recheckInterval: 5s\nretryInterval: 2s\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := &Renewer{}
	c.Apply(r)
	if r.RecheckEvery != 5*time.Second || r.RetryMin != 2*time.Second {
		t.Fatalf("recheck %s retry %s", r.RecheckEvery, r.RetryMin)
	}
	c, _ = ParseConfig([]byte(sampleConfig))
	r = &Renewer{Issuer: noIssuer{}}
	c.Apply(r)
	r.defaults()
	if r.RecheckEvery != time.Minute || r.RetryMin != 10*time.Second {
		t.Fatalf("defaults: recheck %s retry %s", r.RecheckEvery, r.RetryMin)
	}
}

// TestRunRepairsDeletedPair: the loop looks again within RecheckEvery even though the certificate is far from due,
// so deleting the stored pair (how an operator forces a renewal) gets a new certificate.
func TestRunRepairsDeletedPair(t *testing.T) {
	f := newFixture(t)
	f.now = time.Now() // the issuer's clock; the loop's is real
	f.r.Now = nil
	f.r.RecheckEvery = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.r.Run(ctx) }()
	waitCalls := func(n int) {
		t.Helper()
		for ctx.Err() == nil {
			f.issuer.mu.Lock()
			c := f.issuer.calls
			f.issuer.mu.Unlock()
			if c >= n {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("issuer not called %d times", n)
	}
	waitCalls(1)
	for ctx.Err() == nil {
		if _, err := os.Stat(filepath.Join(f.dir, "tls.crt")); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.Remove(filepath.Join(f.dir, "tls.crt")); err != nil {
		t.Fatal(err)
	}
	waitCalls(2)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(sampleConfig))
	f.Add([]byte("targets: []"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if len(c.Targets) == 0 || c.Issuer == "" {
			t.Fatal("accepted a config without targets or issuer")
		}
	})
}
