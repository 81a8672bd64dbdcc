// Package moto starts a real moto server (AWS KMS + STS + IAM in one process) for tests of the IRSA path.
//
// Start launches moto_server on a free loopback port with INITIAL_NO_AUTH_ACTION_COUNT set to exactly the number of
// setup calls it makes, so that after setup every request must carry a valid SigV4 signature from credentials moto
// issued (static dummy keys get HTTP 403) and is checked against the caller's IAM policies. The setup calls create:
//
//   - the platform role (PlatformRoleName in account PlatformAccount) that the pod's web-identity token is exchanged
//     for (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), allowed to assume roles, tag sessions and manage
//     "apeiro-cmk-*" roles;
//   - one role per tenant, TenantRolePrefix+tenant, in the tenant's own account (distinct per tenant unless given),
//     trusting the platform role with sts:ExternalId = tenant and allowed all of KMS in that account.
//
// Env returns the environment a process (or the test itself, via Setenv) needs for the IRSA chain:
// AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_SESSION_NAME, AWS_REGION, AWS_ENDPOINT_URL_STS,
// AWS_ENDPOINT_URL_KMS, AWS_ENDPOINT_URL_IAM, AWS_ENDPOINT_URL, AWS_CONFIG_FILE=/dev/null,
// AWS_SHARED_CREDENTIALS_FILE=/dev/null, AWS_EC2_METADATA_DISABLED=true. No static key is ever set.
//
// moto does not validate the web-identity JWT and does not evaluate trust-policy conditions (sts:ExternalId); what
// it does enforce is the signature and the actions allowed by the caller's policies. moto_server comes from the
// machine image (`make moto` checks it); when it is missing the test skips locally and fails in CI (testpeers).
package moto

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apeirora/apeiro-cmk/internal/testpeers"
)

// Names and accounts the helper uses. They match the defaults of the AWS keystore plugin
// (pkg/plugins/keystore/aws): role name pattern TenantRolePrefix+"{tenant}".
const (
	PlatformAccount  = "123456789012"
	PlatformRoleName = "apeiro-cmk-platform"
	TenantRolePrefix = "apeiro-cmk-tenant-"
	DefaultRegion    = "eu-central-1"
	SessionName      = "apeiro-cmk-test"
)

// Options configure Start.
type Options struct {
	// Tenants get a role TenantRolePrefix+tenant each.
	Tenants []string
	// Accounts maps a tenant to its AWS account id; tenants not listed get a distinct account 2000000000NN.
	Accounts map[string]string
	// Region is AWS_REGION; default DefaultRegion.
	Region string
}

// Server is a running moto server.
type Server struct {
	// Endpoint is the base URL, http://127.0.0.1:<port>.
	Endpoint string
	// Region is the default region handed to clients.
	Region string
	// PlatformRoleARN is AWS_ROLE_ARN, the role the web-identity token is exchanged for.
	PlatformRoleARN string
	// TokenFile is AWS_WEB_IDENTITY_TOKEN_FILE.
	TokenFile string

	mu       sync.Mutex
	accounts map[string]string // tenant → account
	cmd      *exec.Cmd
	done     chan struct{}
	stopped  bool
	logs     *bytes.Buffer
}

// Start starts moto_server and creates the platform and tenant roles; it is stopped when t ends (Stop stops it
// earlier). A missing moto_server skips t locally and fails it in CI.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	testpeers.Command(t, "moto_server", "moto 5.x must be installed (run `make moto` for a check)")
	bin := testpeers.Command(t, "python3", "python3 with moto must be installed (run `make moto` for a check)")
	// The server runs as `python3 -c <shim>`, so the python3 on PATH must be the one moto is installed in.
	if out, err := exec.Command(bin, "-c", "import moto.server").CombinedOutput(); err != nil {
		testpeers.Missing(t, fmt.Sprintf("%s cannot import moto.server (%v: %s); run `make moto` for a check", bin, err, bytes.TrimSpace(out)))
	}
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	s := &Server{
		Region:          opts.Region,
		PlatformRoleARN: "arn:aws:iam::" + PlatformAccount + ":role/" + PlatformRoleName,
		accounts:        map[string]string{},
	}
	for i, tn := range opts.Tenants {
		acct := opts.Accounts[tn]
		if acct == "" {
			acct = fmt.Sprintf("2000000000%02d", i+1)
		}
		s.accounts[tn] = acct
	}
	dir := t.TempDir()
	s.TokenFile = filepath.Join(dir, "token.jwt")
	if err := os.WriteFile(s.TokenFile, []byte(FakeJWT("system:serviceaccount:apeiro-cmk:webhook", time.Now().Add(time.Hour))), 0o600); err != nil {
		t.Fatalf("moto: writing web-identity token: %v", err)
	}

	setupCalls := 2 + 2*len(opts.Tenants)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if lastErr = s.launch(bin, setupCalls); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("moto: %v", lastErr)
	}
	t.Cleanup(s.Stop)

	if err := s.setupRoles(opts.Tenants); err != nil {
		t.Fatalf("moto: setting up IAM roles: %v\n%s", err, s.Logs())
	}
	return s
}

// shim runs moto_server's main with one correction: AssumeRoleWithWebIdentity is an unsigned call in AWS
// (the web-identity token is the credential), but moto's IAM enforcement demands a signature on every call once the
// setup window is over and fails with HTTP 500. The shim lets exactly that unsigned action through, so the window
// stays sized to the setup calls and every other request is still signature- and policy-checked.
const shim = `
import sys
from moto.core import authorization as _a
_orig = _a.ActionAuthenticatorMixin._authenticate_and_authorize_action
def _patched(self, iam_request_cls, resource="*"):
    if "Authorization" not in self.headers and self._get_action() == "AssumeRoleWithWebIdentity":
        return
    return _orig(self, iam_request_cls, resource)
_a.ActionAuthenticatorMixin._authenticate_and_authorize_action = _patched
from moto.server import main
sys.exit(main(sys.argv[1:]))
`

// launch starts the process on a free port and waits until it answers.
func (s *Server) launch(bin string, noAuthCalls int) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	s.logs = &bytes.Buffer{}
	cmd := exec.Command(bin, "-c", shim, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Env = append(cleanEnv(os.Environ()), "INITIAL_NO_AUTH_ACTION_COUNT="+strconv.Itoa(noAuthCalls))
	cmd.Stdout, cmd.Stderr = &lockedWriter{w: s.logs}, &lockedWriter{w: s.logs}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	s.Endpoint = "http://127.0.0.1:" + strconv.Itoa(port)

	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("moto_server exited during start-up (port %d taken?):\n%s", port, s.Logs())
		default:
		}
		resp, err := client.Get(s.Endpoint + "/moto-api/")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.kill()
	return fmt.Errorf("moto_server did not answer on %s within 30s:\n%s", s.Endpoint, s.Logs())
}

// cleanEnv drops AWS_* variables so the server never sees a developer's credentials.
func cleanEnv(env []string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, "AWS_") && !strings.HasPrefix(e, "INITIAL_NO_AUTH_ACTION_COUNT=") && !strings.HasPrefix(e, "MOTO_ACCOUNT_ID=") {
			out = append(out, e)
		}
	}
	return out
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w.Len() > 1<<20 { // bound the captured log
		return len(p), nil
	}
	return l.w.Write(p)
}

// Logs returns what moto_server printed (bounded).
func (s *Server) Logs() string {
	if s.logs == nil {
		return ""
	}
	return s.logs.String()
}

// TenantAccount returns the AWS account of a tenant passed to Start or AddTenant.
func (s *Server) TenantAccount(tenant string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accounts[tenant]
}

// TenantRoleARN returns the role ARN of a tenant (what an Account's spec.auth.irsaRoleARN names).
func (s *Server) TenantRoleARN(tenant string) string {
	return "arn:aws:iam::" + s.TenantAccount(tenant) + ":role/" + TenantRolePrefix + tenant
}

// KeyARN returns the ARN a KMS key id has in a tenant's account and the server's region.
func (s *Server) KeyARN(tenant, keyID string) string {
	return "arn:aws:kms:" + s.Region + ":" + s.TenantAccount(tenant) + ":key/" + keyID
}

// Env returns the IRSA environment as KEY=VALUE pairs (no static credentials).
func (s *Server) Env() []string {
	return []string{
		"AWS_ROLE_ARN=" + s.PlatformRoleARN,
		"AWS_WEB_IDENTITY_TOKEN_FILE=" + s.TokenFile,
		"AWS_ROLE_SESSION_NAME=" + SessionName,
		"AWS_REGION=" + s.Region,
		// The web-identity credential provider builds its own STS client, which ignores AWS_ENDPOINT_URL; the
		// service-specific variable is what redirects it.
		"AWS_ENDPOINT_URL_STS=" + s.Endpoint,
		"AWS_ENDPOINT_URL_KMS=" + s.Endpoint,
		"AWS_ENDPOINT_URL_IAM=" + s.Endpoint,
		"AWS_ENDPOINT_URL=" + s.Endpoint,
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Setenv applies Env to the test process with t.Setenv (so not with t.Parallel) and clears static-key variables.
func (s *Server) Setenv(t testing.TB) {
	t.Helper()
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"} {
		t.Setenv(k, "")
		_ = os.Unsetenv(k)
	}
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it; safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.stopped || s.cmd == nil {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.kill()
	}
}

func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// AddTenant creates the role of a tenant after Start (e.g. for an Account created later in a test). It re-opens the
// unauthenticated window for exactly its two calls, so it must not race with other requests to the server.
func (s *Server) AddTenant(t testing.TB, tenant, account string) {
	t.Helper()
	if account == "" {
		s.mu.Lock()
		account = fmt.Sprintf("2000000001%02d", len(s.accounts)+1)
		s.mu.Unlock()
	}
	if err := s.resetAuth(2); err != nil {
		t.Fatalf("moto: %v", err)
	}
	if err := s.createTenantRole(tenant, account); err != nil {
		t.Fatalf("moto: creating role of tenant %q: %v", tenant, err)
	}
	s.mu.Lock()
	s.accounts[tenant] = account
	s.mu.Unlock()
}

func (s *Server) resetAuth(n int) error {
	resp, err := http.Post(s.Endpoint+"/moto-api/reset-auth", "text/plain", strings.NewReader(strconv.Itoa(n)))
	if err != nil {
		return fmt.Errorf("re-opening the setup window: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("re-opening the setup window: HTTP %d", resp.StatusCode)
	}
	return nil
}

func (s *Server) setupRoles(tenants []string) error {
	trust := policy(map[string]any{
		"Effect":    "Allow",
		"Principal": map[string]any{"Federated": "arn:aws:iam::" + PlatformAccount + ":oidc-provider/oidc.example.test"},
		"Action":    "sts:AssumeRoleWithWebIdentity",
	})
	perms := policy(
		map[string]any{"Effect": "Allow", "Action": []string{"sts:AssumeRole", "sts:TagSession", "sts:GetCallerIdentity"}, "Resource": "*"},
		map[string]any{"Effect": "Allow", "Action": []string{
			"iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy",
			"iam:TagRole", "iam:UntagRole", "iam:ListRoleTags", "iam:ListRolePolicies",
		}, "Resource": "*"}, // moto matches IAM statements against resource "*" only

	)
	if err := s.iamCall(PlatformAccount, url.Values{"Action": {"CreateRole"}, "RoleName": {PlatformRoleName}, "AssumeRolePolicyDocument": {trust}}); err != nil {
		return err
	}
	if err := s.iamCall(PlatformAccount, url.Values{"Action": {"PutRolePolicy"}, "RoleName": {PlatformRoleName}, "PolicyName": {"platform"}, "PolicyDocument": {perms}}); err != nil {
		return err
	}
	for _, tn := range tenants {
		if err := s.createTenantRole(tn, s.accounts[tn]); err != nil {
			return fmt.Errorf("tenant %q: %w", tn, err)
		}
	}
	return nil
}

// TenantTrustPolicy is the trust policy an operator writes on a tenant's role: only the platform role (sessions of
// it) may assume it, only with ExternalId = tenant, and it may tag the session only with tenant = <tenant>. moto
// evaluates the ExternalId condition for roles in the caller's own account (not across accounts), and compares
// principals literally, so the platform's session ARN is listed next to its role ARN.
func TenantTrustPolicy(platformRoleARN, tenant string) string {
	principals := []string{platformRoleARN, "arn:aws:sts::" + PlatformAccount + ":assumed-role/" + PlatformRoleName + "/" + SessionName}
	return policy(
		map[string]any{
			"Effect":    "Allow",
			"Principal": map[string]any{"AWS": principals},
			"Action":    "sts:AssumeRole",
			"Condition": map[string]any{"StringEquals": map[string]any{"sts:ExternalId": tenant}},
		},
		map[string]any{
			"Effect":    "Allow",
			"Principal": map[string]any{"AWS": principals},
			"Action":    "sts:TagSession",
			"Condition": map[string]any{"StringEquals": map[string]any{"aws:RequestTag/tenant": tenant}},
		},
	)
}

func (s *Server) createTenantRole(tenant, account string) error {
	perms := policy(map[string]any{"Effect": "Allow", "Action": "kms:*", "Resource": "*"})
	name := TenantRolePrefix + tenant
	if err := s.iamCall(account, url.Values{"Action": {"CreateRole"}, "RoleName": {name}, "AssumeRolePolicyDocument": {TenantTrustPolicy(s.PlatformRoleARN, tenant)}}); err != nil {
		return err
	}
	return s.iamCall(account, url.Values{"Action": {"PutRolePolicy"}, "RoleName": {name}, "PolicyName": {"kms"}, "PolicyDocument": {perms}})
}

func policy(statements ...map[string]any) string {
	b, _ := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": statements})
	return string(b)
}

// iamCall makes one unauthenticated IAM query call in account (moto's x-moto-account-id header selects it). The
// Authorization header only carries the credential scope moto routes by; it is not checked during the setup window.
func (s *Server) iamCall(account string, form url.Values) error {
	form.Set("Version", "2010-05-08")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint+"/", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("x-moto-account-id", account)
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIASETUPONLY/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("IAM %s: %w", form.Get("Action"), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("IAM %s in account %s: HTTP %d: %s", form.Get("Action"), account, resp.StatusCode, body)
	}
	return nil
}

// FakeJWT returns a well-formed, unsigned-looking JWT with subject sub and expiry exp. moto accepts any
// header.payload.signature token; the plugin reads only its expiry (to refuse expired tokens before calling STS).
func FakeJWT(sub string, exp time.Time) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]any{"alg": "RS256", "typ": "JWT", "kid": "moto"})
	p, _ := json.Marshal(map[string]any{"iss": "https://oidc.example.test", "sub": sub, "aud": "sts.amazonaws.com", "exp": exp.Unix(), "iat": time.Now().Unix()})
	return enc.EncodeToString(h) + "." + enc.EncodeToString(p) + "." + enc.EncodeToString([]byte("signature"))
}
