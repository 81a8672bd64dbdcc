package certmanager

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	certv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fakeClient is an in-memory API; react plays the controller for each created request.
type fakeClient struct {
	mu       sync.Mutex
	crs      map[string]*cmapi.CertificateRequest
	n        int
	issuer   *cmapi.IssuerStatus // nil = not found
	react    func(cr *cmapi.CertificateRequest)
	failGet  bool
	deleted  []string
	createFn func() error
}

func newFake(react func(cr *cmapi.CertificateRequest)) *fakeClient {
	return &fakeClient{crs: map[string]*cmapi.CertificateRequest{}, issuer: &cmapi.IssuerStatus{}, react: react}
}

func (f *fakeClient) CreateCertificateRequest(_ context.Context, cr *cmapi.CertificateRequest) (*cmapi.CertificateRequest, error) {
	if f.createFn != nil {
		if err := f.createFn(); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	c := cr.DeepCopy()
	c.Name = fmt.Sprintf("%s%d", cr.GenerateName, f.n)
	c.CreationTimestamp = metav1.Now()
	f.crs[c.Name] = c
	if f.react != nil {
		f.react(c)
	}
	return c.DeepCopy(), nil
}

func (f *fakeClient) GetCertificateRequest(_ context.Context, _, name string) (*cmapi.CertificateRequest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failGet {
		return nil, apierrors.NewServiceUnavailable("etcd down")
	}
	c, ok := f.crs[name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: "cert-manager.io", Resource: "certificaterequests"}, name)
	}
	return c.DeepCopy(), nil
}

func (f *fakeClient) DeleteCertificateRequest(_ context.Context, _, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.crs, name)
	f.deleted = append(f.deleted, name)
	return nil
}

func (f *fakeClient) ListCertificateRequests(context.Context, string, string) ([]cmapi.CertificateRequest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []cmapi.CertificateRequest
	for _, c := range f.crs {
		out = append(out, *c.DeepCopy())
	}
	return out, nil
}

func (f *fakeClient) IssuerStatus(_ context.Context, _ string, ref cmmeta.IssuerReference) (*cmapi.IssuerStatus, error) {
	if f.issuer == nil {
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: "cert-manager.io", Resource: "issuers"}, ref.Name)
	}
	return f.issuer, nil
}

func (f *fakeClient) left() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.crs)
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t testing.TB) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().AddDate(1, 0, 0), KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{c, key}
}

// sign plays cert-manager's CA issuer: it copies the CSR's subject and URIs (mutate may tamper).
func (ca *testCA) sign(t testing.TB, cr *cmapi.CertificateRequest, mutate func(*x509.Certificate)) {
	b, _ := pem.Decode(cr.Spec.Request)
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		t.Error(err)
		return
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: csr.Subject, URIs: csr.URIs,
		NotBefore: time.Now(), NotAfter: time.Now().Add(cr.Spec.Duration.Duration),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if mutate != nil {
		mutate(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		t.Error(err)
		return
	}
	cr.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cr.Status.CA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
	cr.Status.Conditions = []cmapi.CertificateRequestCondition{
		{Type: cmapi.CertificateRequestConditionApproved, Status: cmmeta.ConditionTrue},
		{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionTrue, Reason: "Issued"},
	}
}

const testYAML = "namespace: cmk-certificates\nissuerRef: {name: tenant-ca}\ntrustDomain: apeiro.example\ntenantCNPrefix: cmk-\ntimeout: 1s\n"

func configured(t *testing.T, c Client, y string) *Plugin {
	t.Helper()
	p := New(WithClient(c))
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: y}); err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func cmkKeyPEM(t testing.TB) []byte {
	keyOnce.Do(func() { rsaKey, _ = rsa.GenerateKey(rand.Reader, 3072) })
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
}

func cmkRequest(t testing.TB, cn string) *certv1.GetCertificateRequest {
	return &certv1.GetCertificateRequest{CommonName: cn, Locality: []string{"eu-central"},
		Validity: &certv1.GetCertificateValidity{Value: 30, Type: certv1.ValidityType_VALIDITY_TYPE_DAYS}, PrivateKey: &certv1.PrivateKey{Data: cmkKeyPEM(t)}}
}

func cond(typ cmapi.CertificateRequestConditionType, st cmmeta.ConditionStatus, reason, msg string) cmapi.CertificateRequestCondition {
	return cmapi.CertificateRequestCondition{Type: typ, Status: st, Reason: reason, Message: msg}
}

func TestOutcomes(t *testing.T) {
	ca := newTestCA(t)
	tests := map[string]struct {
		react  func(*cmapi.CertificateRequest)
		issuer *cmapi.IssuerStatus
		noIss  bool
		code   codes.Code
		want   string
	}{
		"issued": {react: func(cr *cmapi.CertificateRequest) { ca.sign(t, cr, nil) }, code: codes.OK},
		"denied": {react: func(cr *cmapi.CertificateRequest) {
			cr.Status.Conditions = []cmapi.CertificateRequestCondition{cond(cmapi.CertificateRequestConditionDenied, cmmeta.ConditionTrue, "PolicyDenied", "no")}
		}, code: codes.PermissionDenied, want: "was denied: PolicyDenied: no"},
		"invalid": {react: func(cr *cmapi.CertificateRequest) {
			cr.Status.Conditions = []cmapi.CertificateRequestCondition{cond(cmapi.CertificateRequestConditionInvalidRequest, cmmeta.ConditionTrue, "BadCSR", "bad")}
		}, code: codes.InvalidArgument, want: "is invalid: BadCSR"},
		"failed": {react: func(cr *cmapi.CertificateRequest) {
			cr.Status.Conditions = []cmapi.CertificateRequestCondition{
				cond(cmapi.CertificateRequestConditionApproved, cmmeta.ConditionTrue, "", ""),
				cond(cmapi.CertificateRequestConditionReady, cmmeta.ConditionFalse, cmapi.CertificateRequestReasonFailed, "CA expired")}
		}, code: codes.FailedPrecondition, want: "failed: CA expired"},
		"never approved": {react: nil, code: codes.DeadlineExceeded, want: "never approved"},
		"approved, nobody signs": {react: func(cr *cmapi.CertificateRequest) {
			cr.Status.Conditions = []cmapi.CertificateRequestCondition{cond(cmapi.CertificateRequestConditionApproved, cmmeta.ConditionTrue, "", "")}
		}, code: codes.DeadlineExceeded, want: "no issuer picked it up"},
		"pending": {react: func(cr *cmapi.CertificateRequest) {
			cr.Status.Conditions = []cmapi.CertificateRequestCondition{
				cond(cmapi.CertificateRequestConditionApproved, cmmeta.ConditionTrue, "", ""),
				cond(cmapi.CertificateRequestConditionReady, cmmeta.ConditionFalse, "Pending", "waiting")}
		}, code: codes.DeadlineExceeded, want: "Ready=False (Pending: waiting)"},
		"issuer missing":   {noIss: true, code: codes.FailedPrecondition, want: "does not exist"},
		"issuer not ready": {issuer: &cmapi.IssuerStatus{Conditions: []cmapi.IssuerCondition{{Type: cmapi.IssuerConditionReady, Status: cmmeta.ConditionFalse, Reason: "ErrGetKeyPair", Message: "secret not found"}}}, code: codes.FailedPrecondition, want: "is not ready: ErrGetKeyPair"},
		"wrong tenant returned": {react: func(cr *cmapi.CertificateRequest) {
			ca.sign(t, cr, func(c *x509.Certificate) {
				u, _ := url.Parse("spiffe://apeiro.example/tenant/globex/component/x")
				c.URIs = []*url.URL{u}
			})
		}, code: codes.Internal, want: `names tenant "globex"`},
		"no clientAuth returned": {react: func(cr *cmapi.CertificateRequest) {
			ca.sign(t, cr, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })
		}, code: codes.Internal, want: "not a clientAuth"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFake(tc.react)
			if tc.issuer != nil {
				f.issuer = tc.issuer
			}
			if tc.noIss {
				f.issuer = nil
			}
			p := configured(t, f, testYAML)
			resp, err := p.GetCertificate(context.Background(), cmkRequest(t, "cmk-acme"))
			if status.Code(err) != tc.code || (tc.want != "" && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err = %v, want %v with %q", err, tc.code, tc.want)
			}
			if tc.code == codes.OK && !strings.Contains(resp.GetCertificateChain(), "BEGIN CERTIFICATE") {
				t.Fatal("no chain")
			}
			if f.left() != 0 {
				t.Fatalf("%d CertificateRequests left behind", f.left())
			}
		})
	}
}

func TestRequestShape(t *testing.T) {
	var got *cmapi.CertificateRequest
	ca := newTestCA(t)
	f := newFake(func(cr *cmapi.CertificateRequest) { got = cr.DeepCopy(); ca.sign(t, cr, nil) })
	p := configured(t, f, testYAML+"component: crypto-manager\n")
	if _, err := p.GetCertificate(context.Background(), cmkRequest(t, "cmk-acme")); err != nil {
		t.Fatal(err)
	}
	if got.Namespace != "cmk-certificates" || got.Labels[LabelTenant] != "acme" || got.Labels[LabelManagedBy] != managedByValue ||
		got.Spec.IssuerRef.Kind != "Issuer" || got.Spec.IssuerRef.Group != "cert-manager.io" || got.Spec.Duration.Duration != 30*24*time.Hour {
		t.Fatalf("request = %+v", got)
	}
	want := []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment, cmapi.UsageClientAuth}
	if fmt.Sprint(got.Spec.Usages) != fmt.Sprint(want) {
		t.Fatalf("usages %v", got.Spec.Usages)
	}
	csr, err := ParseCSR(got.Spec.Request)
	if err != nil {
		t.Fatal(err)
	}
	if csr.Subject.CommonName != "cmk-acme" || len(csr.URIs) != 1 || csr.URIs[0].String() != "spiffe://apeiro.example/tenant/acme/component/crypto-manager" {
		t.Fatalf("CSR subject %s URIs %v", csr.Subject, csr.URIs)
	}
	if len(csr.Extensions) != 1 { // only the SAN: no key-usage extensions that would have to match spec.usages
		t.Fatalf("CSR has %d extensions", len(csr.Extensions))
	}
}

func TestRejectsBeforeCreating(t *testing.T) {
	f := newFake(nil)
	p := configured(t, f, testYAML)
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	weakPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(weak)})
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p224DER, _ := x509.MarshalPKCS8PrivateKey(p224)
	for name, tc := range map[string]struct {
		mut  func(*certv1.GetCertificateRequest)
		want string
	}{
		"upper-case tenant": {func(r *certv1.GetCertificateRequest) { r.CommonName = "cmk-Acme" }, "valid URI path segment"},
		"tenant with space": {func(r *certv1.GetCertificateRequest) { r.CommonName = "cmk-a b" }, "valid URI path segment"},
		"tenant with slash": {func(r *certv1.GetCertificateRequest) { r.CommonName = "cmk-a/../b" }, "valid URI path segment"},
		"tenant percent":    {func(r *certv1.GetCertificateRequest) { r.CommonName = "cmk-a%2fb" }, "valid URI path segment"},
		"no prefix":         {func(r *certv1.GetCertificateRequest) { r.CommonName = "acme" }, "tenant prefix"},
		"empty CN":          {func(r *certv1.GetCertificateRequest) { r.CommonName = "" }, "required"},
		"weak RSA":          {func(r *certv1.GetCertificateRequest) { r.PrivateKey.Data = weakPEM }, "1024 bits"},
		"P-224":             {func(r *certv1.GetCertificateRequest) { r.PrivateKey.Data = p224DER }, "P-224"},
		"no key":            {func(r *certv1.GetCertificateRequest) { r.PrivateKey = nil }, "empty"},
		"validity too long": {func(r *certv1.GetCertificateRequest) { r.Validity.Value = 91 }, "exceeds the maximum of 90 days"},
		"validity absurd":   {func(r *certv1.GetCertificateRequest) { r.Validity.Value = 1 << 50 }, "positive and sane"},
		"validity missing":  {func(r *certv1.GetCertificateRequest) { r.Validity = nil }, "required"},
		"validity type":     {func(r *certv1.GetCertificateRequest) { r.Validity.Type = 0 }, "not supported"},
		"control locality":  {func(r *certv1.GetCertificateRequest) { r.Locality = []string{"eu\n"} }, "non-printable"},
		"too many locality": {func(r *certv1.GetCertificateRequest) { r.Locality = make([]string, 9) }, "at most 8"},
	} {
		t.Run(name, func(t *testing.T) {
			r := cmkRequest(t, "cmk-acme")
			tc.mut(r)
			_, err := p.GetCertificate(context.Background(), r)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want InvalidArgument with %q", err, tc.want)
			}
		})
	}
	if f.n != 0 {
		t.Fatalf("%d CertificateRequests created for bad input", f.n)
	}
}

func TestMinRSABits(t *testing.T) {
	f := newFake(nil)
	p := configured(t, f, testYAML+"minRSABits: 4096\n")
	_, err := p.GetCertificate(context.Background(), cmkRequest(t, "cmk-acme"))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "3072 bits is too weak (at least 4096") {
		t.Fatalf("err = %v", err)
	}
}

func TestAPIErrors(t *testing.T) {
	gr := schema.GroupResource{Group: "cert-manager.io", Resource: "certificaterequests"}
	for name, tc := range map[string]struct {
		err  error
		code codes.Code
	}{
		"forbidden":   {apierrors.NewForbidden(gr, "", fmt.Errorf("rbac")), codes.PermissionDenied},
		"ns missing":  {apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "x"), codes.FailedPrecondition},
		"unavailable": {apierrors.NewServiceUnavailable("down"), codes.Unavailable},
		"invalid":     {apierrors.NewBadRequest("no"), codes.InvalidArgument},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFake(nil)
			f.createFn = func() error { return tc.err }
			p := configured(t, f, testYAML)
			if _, err := p.GetCertificate(context.Background(), cmkRequest(t, "cmk-acme")); status.Code(err) != tc.code {
				t.Fatalf("err = %v, want %v", err, tc.code)
			}
		})
	}
	// A persistently failing read: the bound still holds and the request is still deleted.
	f := newFake(nil)
	f.failGet = true
	p := configured(t, f, testYAML)
	if _, err := p.GetCertificate(context.Background(), cmkRequest(t, "cmk-acme")); status.Code(err) != codes.DeadlineExceeded ||
		!strings.Contains(err.Error(), "could not be read back") {
		t.Fatalf("err = %v", err)
	}
	if f.left() != 0 {
		t.Fatal("request left behind")
	}
}

func TestSweepRemovesOldLeftovers(t *testing.T) {
	f := newFake(nil)
	old := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Name: "cmk-acme-old", Namespace: "cmk-certificates",
		CreationTimestamp: metav1.NewTime(time.Now().Add(-time.Hour))}}
	fresh := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Name: "cmk-acme-new", Namespace: "cmk-certificates",
		CreationTimestamp: metav1.NewTime(time.Now())}}
	f.crs[old.Name], f.crs[fresh.Name] = old, fresh
	p := New(WithClient(f))
	s, _ := parseConfig(testYAML)
	p.sweep(f, s)
	if _, ok := f.crs[old.Name]; ok {
		t.Fatal("old leftover not swept")
	}
	if _, ok := f.crs[fresh.Name]; !ok {
		t.Fatal("in-flight request swept")
	}
}

func TestUnconfigured(t *testing.T) {
	if _, err := New().GetCertificate(context.Background(), cmkRequest(t, "cmk-acme")); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("err = %v", err)
	}
}

func TestConfig(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"empty":          {"", "configuration required"},
		"no issuer":      {"namespace: x\ntrustDomain: a.b", "configuration required"},
		"unknown field":  {testYAML + "foo: 1", "unknown field"},
		"bad yaml":       {"namespace: [", "decode YAML"},
		"bad kind":       {strings.Replace(testYAML, "{name: tenant-ca}", "{name: tenant-ca, kind: Certificate}", 1), "issuerRef.kind"},
		"bad group":      {strings.Replace(testYAML, "{name: tenant-ca}", "{name: tenant-ca, group: example.com}", 1), "issuerRef.group"},
		"bad namespace":  {strings.Replace(testYAML, "cmk-certificates", "Bad_NS", 1), "namespace"},
		"bad issuer":     {strings.Replace(testYAML, "tenant-ca", "Tenant CA", 1), "issuerRef.name"},
		"bad td":         {strings.Replace(testYAML, "apeiro.example", "apeiro/evil", 1), "trustDomain"},
		"bad prefix":     {strings.Replace(testYAML, "tenantCNPrefix: cmk-", "tenantCNPrefix: CMK_", 1), "tenantCNPrefix"},
		"bad component":  {testYAML + "component: a/b\n", "component"},
		"bad timeout":    {strings.Replace(testYAML, "1s", "forever", 1), "timeout"},
		"long timeout":   {strings.Replace(testYAML, "1s", "1h", 1), "between 1s"},
		"validity":       {testYAML + "maxValidityDays: 9999\n", "maxValidityDays"},
		"rsa bits":       {testYAML + "minRSABits: 1024\n", "minRSABits"},
		"huge":           {strings.Repeat("#", maxConfigBytes+1), "exceeds"},
		"bad kubeconfig": {testYAML + "kubeconfig: /nonexistent/kubeconfig\n", "kubernetes client configuration"},
	} {
		t.Run(name, func(t *testing.T) {
			p := New()
			_, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: tc.yaml})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want InvalidArgument with %q", err, tc.want)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add(testYAML)
	f.Add("namespace: a\nissuerRef: {name: b, kind: ClusterIssuer}\ntrustDomain: c\ntimeout: 5m\n")
	f.Add("{")
	f.Fuzz(func(t *testing.T, y string) {
		s, err := parseConfig(y)
		if err != nil {
			return
		}
		if s.namespace == "" || s.issuer.Name == "" || s.trustDomain == "" || s.timeout < time.Second || s.timeout > maxTimeout ||
			s.maxValidity < 1 || s.maxValidity > maxAllowedValidityDays {
			t.Fatalf("accepted an invalid configuration: %+v", s)
		}
	})
}

func FuzzParseCSR(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "cmk-acme"}}, key)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := ParseCSR(b)
		if err == nil && csr.CheckSignature() != nil {
			t.Fatal("accepted a CSR with a bad signature")
		}
	})
}

func FuzzTenantFromCN(f *testing.F) {
	for _, s := range []string{"cmk-acme", "cmk-", "cmk-A", "cmk-a/b", "cmk-a..b", "cmk-" + strings.Repeat("a", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cn string) {
		tenant, err := tenantFromCN(cn, "cmk-")
		if err != nil {
			return
		}
		if _, err := url.Parse("spiffe://x/tenant/" + tenant); err != nil || strings.ContainsAny(tenant, "/%?#") {
			t.Fatalf("tenant %q from %q is not a clean URI segment", tenant, cn)
		}
	})
}

func BenchmarkGetCertificateFake(b *testing.B) {
	ca := newTestCA(b)
	f := newFake(func(cr *cmapi.CertificateRequest) { ca.sign(b, cr, nil) })
	p := New(WithClient(f))
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: testYAML}); err != nil {
		b.Fatal(err)
	}
	req := cmkRequest(b, "cmk-acme")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.GetCertificate(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSignCSRRejects(t *testing.T) {
	f := newFake(nil)
	p := configured(t, f, testYAML)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := func(cn string, uris []string, dns []string) []byte {
		var us []*url.URL
		for _, u := range uris {
			pu, _ := url.Parse(u)
			us = append(us, pu)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, URIs: us, DNSNames: dns}, key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	good := []string{"spiffe://apeiro.example/tenant/acme/component/crypto-manager"}
	tampered := csr("cmk-acme", good, nil)
	tampered[len(tampered)/2] ^= 1
	for name, tc := range map[string]struct {
		tenant string
		csr    []byte
		life   time.Duration
		code   codes.Code
	}{
		"tenant not a URI segment": {"Acme/Corp", csr("cmk-acme", good, nil), time.Hour, codes.InvalidArgument},
		"DNS SAN":                  {"acme", csr("cmk-acme", good, []string{"evil.example"}), time.Hour, codes.InvalidArgument},
		"two URIs":                 {"acme", csr("cmk-acme", append(good, good[0]), nil), time.Hour, codes.InvalidArgument},
		"no URI":                   {"acme", csr("cmk-acme", nil, nil), time.Hour, codes.InvalidArgument},
		"other tenant in URI":      {"globex", csr("cmk-globex", good, nil), time.Hour, codes.PermissionDenied},
		"other tenant in CN":       {"acme", csr("cmk-globex", good, nil), time.Hour, codes.PermissionDenied},
		"lifetime too long":        {"acme", csr("cmk-acme", good, nil), 91 * 24 * time.Hour, codes.InvalidArgument},
		"lifetime too short":       {"acme", csr("cmk-acme", good, nil), time.Minute, codes.InvalidArgument},
		"garbage":                  {"acme", []byte("not a csr"), time.Hour, codes.InvalidArgument},
		"tampered":                 {"acme", tampered, time.Hour, codes.InvalidArgument},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := p.SignCSR(context.Background(), tc.tenant, tc.csr, tc.life); status.Code(err) != tc.code {
				t.Fatalf("err = %v, want %v", err, tc.code)
			}
		})
	}
	if f.n != 0 {
		t.Fatalf("%d CertificateRequests created for bad CSRs", f.n)
	}
}
