package identity

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/internal/testpeers"
	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/identity/identitytest"
)

// TestKubeAPIServerTokenWebhook configures a real kube-apiserver with the TokenReview handler as its
// authentication webhook and authenticates a Platform Mesh user holding a real Hydra ID token: the API server's own
// SelfSubjectReview reports the username, the role groups and the permissions extra. It runs the handler in-process
// (no webhook binary); test/e2e TestIdentityThroughAPIServer runs the same path through the webhook binary and its
// real admission handlers.
func TestKubeAPIServerTokenWebhook(t *testing.T) {
	kubeBin := testpeers.Env(t, "KUBE_BIN", "run `make kube-bin` and export KUBE_BIN=$(bash hack/peers/build-kube.sh)")
	h := identitytest.StartHydra(t)
	roles, _ := NewRoleMap(RoleConfig{})
	auth, err := New(Options{Platform: []IssuerConfig{{URL: h.Issuer, Audiences: []string{"cmk-web", "cmk-web-2"}}}, Roles: roles, Client: h.Client()})
	if err != nil {
		t.Fatal(err)
	}
	idt := h.UserIDToken(t, "cmk-web", "alice", []string{"acme:Admin", "globex:Viewer"})
	bobTok := h.UserIDToken(t, "cmk-web-2", "bob", []string{"acme:Viewer"})

	// The TokenReview webhook over TLS with a throw-away CA.
	ca, err := controlplane.NewCA("identity-webhook-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.IssueServing("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var reviews, accepted atomic.Int64
	handler := &TokenReviewHandler{Auth: auth, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/admit" {
			admitByTenantGroups(w, r)
			return
		}
		reviews.Add(1)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, r)
		var tr authenticationv1.TokenReview
		if json.Unmarshal(rec.Body.Bytes(), &tr) == nil && tr.Status.Authenticated {
			accepted.Add(1)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	work := t.TempDir()
	cfgPath := filepath.Join(work, "authn-webhook.kubeconfig")
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: apeiro-cmk-identity
  cluster:
    server: %s/tokenreview
    certificate-authority-data: %s
users:
- name: kube-apiserver
  user: {}
contexts:
- name: webhook
  context: {cluster: apeiro-cmk-identity, user: kube-apiserver}
current-context: webhook
`, srv.URL, base64.StdEncoding.EncodeToString(ca.CertPEM))
	if err := os.WriteFile(cfgPath, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp, err := controlplane.Start(ctx, controlplane.Config{BinDir: kubeBin, WorkDir: filepath.Join(work, "cp"), ExtraAPIServerArgs: []string{
		"--authentication-token-webhook-config-file=" + cfgPath,
		"--authentication-token-webhook-version=v1",
		"--authentication-token-webhook-cache-ttl=1s",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cp.CACertPEM)
	api := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	whoami := func(token string) (int, *authenticationv1.SelfSubjectReview) {
		body := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
		req, _ := http.NewRequest(http.MethodPost, cp.URL+"/apis/authentication.k8s.io/v1/selfsubjectreviews", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := api.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var ssr authenticationv1.SelfSubjectReview
		_ = json.Unmarshal(b, &ssr)
		return resp.StatusCode, &ssr
	}

	code, ssr := whoami(idt)
	if code != http.StatusCreated {
		t.Fatalf("SelfSubjectReview with a Hydra ID token: HTTP %d", code)
	}
	ui := ssr.Status.UserInfo
	if ui.Username != "platform:alice" {
		t.Fatalf("username %q", ui.Username)
	}
	for _, g := range []string{"apeiro-cmk:tenant:acme:admin", "apeiro-cmk:tenant:globex:viewer", "system:authenticated"} {
		if !slices.Contains(ui.Groups, g) {
			t.Fatalf("groups %v lack %q", ui.Groups, g)
		}
	}
	perms := ui.Extra[ExtraPermissions]
	if !slices.Contains(perms, "acme:keys.write") || !slices.Contains(perms, "globex:keys.read") || slices.Contains(perms, "globex:keys.write") {
		t.Fatalf("extra permissions %v", perms)
	}

	forged := newRSAKey(t, headerKid(t, idt)).sign(t, claims(idt, t))
	for name, tok := range map[string]string{"forged": forged, "garbage": "abc.def.ghi", "oversized": string(bytes.Repeat([]byte("a"), MaxTokenBytes+10))} {
		if code, _ := whoami(tok); code != http.StatusUnauthorized {
			t.Errorf("%s token: HTTP %d from the API server, want 401", name, code)
		}
	}
	if reviews.Load() == 0 || accepted.Load() != 1 {
		t.Fatalf("webhook saw %d reviews, %d accepted; want >0 and exactly 1", reviews.Load(), accepted.Load())
	}

	// The API server hands the TokenReview's groups to admission: a webhook deciding with the admission
	// tenant-permission rule (admission.TenantGroups, default prefix) lets an Admin write in its tenant and denies a
	// Viewer, and an Admin of another tenant, with a message naming the missing group.
	setupAdmissionFixture(t, cp, srv.URL, ca.CertPEM)
	for _, tc := range []struct {
		name, token, ns string
		code            int
	}{
		{"Viewer of acme writes in acme", bobTok, "acme-ns", http.StatusForbidden},
		{"Admin of acme writes in acme", idt, "acme-ns", http.StatusCreated},
		{"Admin of acme (Viewer of globex) writes in globex", idt, "globex-ns", http.StatusForbidden},
	} {
		code, body := createConfigMap(t, api, cp.URL, tc.token, tc.ns, tc.code)
		if code != tc.code {
			t.Errorf("%s: HTTP %d (%s), want %d", tc.name, code, body, tc.code)
		}
		if code == http.StatusForbidden && !bytes.Contains(body, []byte("requires group")) {
			t.Errorf("%s: denial without the precise reason: %s", tc.name, body)
		}
	}
}

// admitByTenantGroups is a validating admission webhook that applies the admission tenant-permission rule to the
// userInfo the API server sends (tenant = the namespace's tenant, fixed for the test namespaces).
func admitByTenantGroups(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "bad review", http.StatusBadRequest)
		return
	}
	tenant := map[string]string{"acme-ns": "acme", "globex-ns": "globex"}[review.Request.Namespace]
	perms := admission.TenantGroups{Prefix: admission.DefaultTenantAdminGroupPrefix, Bypass: admission.DefaultBypassGroups, BypassUsers: admission.DefaultBypassUsers}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if err := perms.Authorize(r.Context(), review.Request.UserInfo, tenant, "ConfigMap", admission.ActionWrite); err != nil {
		resp.Allowed = false
		resp.Result = &metav1.Status{Code: http.StatusForbidden, Message: err.Error()}
	}
	review.Response = resp
	review.Request = nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&review)
}

// setupAdmissionFixture creates two tenant namespaces, lets every authenticated user create ConfigMaps (RBAC is
// not what is tested) and registers admitByTenantGroups for ConfigMap creation.
func setupAdmissionFixture(t *testing.T, cp *controlplane.ControlPlane, webhookURL string, caPEM []byte) {
	t.Helper()
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	c, err := client.New(cp.RESTConfig(), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fail, none := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone
	path := "/admit"
	url := webhookURL + path
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "acme-ns", Labels: map[string]string{"cmk.apeiro.io/tenant": "acme"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "globex-ns", Labels: map[string]string{"cmk.apeiro.io/tenant": "globex"}}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "cm-writer"}, Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}}}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "cm-writer"}, RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cm-writer"},
			Subjects: []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "system:authenticated"}}},
		&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "tenant-groups"}, Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "tenant-groups.identity.test",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "cmk.apeiro.io/tenant", Operator: metav1.LabelSelectorOpExists}}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
		}}},
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %T: %v", o, err)
		}
	}
}

var cmCounter atomic.Int64

// createConfigMap creates a ConfigMap as the bearer of token. The RBAC binding and the webhook configuration take
// effect asynchronously, so it retries (30 s) until the expected verdict shows: a creation, or a denial by the
// tenant-permission webhook (which names the missing group). The first case run is a denial, so later creations
// are known to have passed the webhook.
func createConfigMap(t *testing.T, api *http.Client, base, token, ns string, wantCode int) (int, []byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		body := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm-%d"}}`, cmCounter.Add(1))
		req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/namespaces/"+ns+"/configmaps", bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := api.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done := resp.StatusCode == wantCode && (wantCode != http.StatusForbidden || bytes.Contains(b, []byte("requires group")))
		if done || time.Now().After(deadline) {
			return resp.StatusCode, b
		}
		time.Sleep(300 * time.Millisecond)
	}
}
