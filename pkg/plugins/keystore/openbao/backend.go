package openbao

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bao "github.com/openbao/openbao/api/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// logical lists exactly the OpenBao HTTP calls the plugin makes (all through the client's Logical API); *bao.Logical
// implements it.
type logical interface {
	ReadWithContext(ctx context.Context, path string) (*bao.Secret, error)
	WriteWithContext(ctx context.Context, path string, data map[string]any) (*bao.Secret, error)
	DeleteWithContext(ctx context.Context, path string) (*bao.Secret, error)
	ListWithContext(ctx context.Context, path string) (*bao.Secret, error)
}

// maxSecretFileBytes bounds credential files (service-account tokens are ~1 KiB, secret ids 36 bytes).
const maxSecretFileBytes = 64 << 10

// session owns the plugin's OpenBao client and its short-lived token: it logs in on first use, renews the token
// when two thirds of its TTL have passed, and logs in again when renewal fails or the server refuses the token
// (expired, revoked, or the server lost its state in a restart).
type session struct {
	cfg *Config
	now func() time.Time

	// mu guards the fields below; it is a channel so a caller waiting for another caller's login gives up at its own
	// deadline instead of queueing behind a hanging server.
	mu        chan struct{}
	client    *bao.Client
	token     string
	renewAt   time.Time
	expires   time.Time
	renewable bool

	logins, renewals atomic.Int64
}

func (s *session) build() (*bao.Client, error) {
	addr := s.cfg.address()
	if addr == "" {
		return nil, &Error{Code: codes.FailedPrecondition, Field: "address", Kind: keychain.ErrUnavailable,
			Msg: "no OpenBao address: set address in the plugin configuration (or BAO_ADDR)"}
	}
	bc := bao.DefaultConfig()
	if bc.Error != nil {
		return nil, fmt.Errorf("openbao client defaults: %w", bc.Error)
	}
	bc.Address = addr
	bc.Timeout = s.cfg.callTimeout
	// Few, short retries: a sealed or restarting server must surface within the caller's deadline, not after
	// the library's default backoff.
	bc.MaxRetries = 1
	bc.MinRetryWait = 100 * time.Millisecond
	bc.MaxRetryWait = 500 * time.Millisecond
	tlsCfg := &bao.TLSConfig{CACert: s.cfg.CACertFile}
	if a := s.cfg.Auth; a != nil && a.Method == AuthCert {
		tlsCfg.ClientCert, tlsCfg.ClientKey = a.CertFile, a.KeyFile
	}
	if err := bc.ConfigureTLS(tlsCfg); err != nil {
		return nil, &Error{Code: codes.FailedPrecondition, Field: "caCertFile", Msg: "OpenBao TLS configuration: " + err.Error()}
	}
	if tr, ok := bc.HttpClient.Transport.(*http.Transport); ok && tr.TLSClientConfig != nil && tr.TLSClientConfig.MinVersion < tls.VersionTLS12 {
		tr.TLSClientConfig.MinVersion = tls.VersionTLS12
	}
	c, err := bao.NewClient(bc)
	if err != nil {
		return nil, fmt.Errorf("openbao client: %w", err)
	}
	// NewClient picks BAO_TOKEN / VAULT_TOKEN from the environment; the plugin never uses a long-lived token.
	c.ClearToken()
	c.SetCloneToken(false)
	return c, nil
}

// get returns the client with a valid token; force discards the current token and logs in again.
func (s *session) lock(ctx context.Context) error {
	select {
	case s.mu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return mapBao(ctx, "waiting for the OpenBao login", ctx.Err())
	}
}

func (s *session) unlock() { <-s.mu }

func (s *session) get(ctx context.Context, force bool) (*bao.Client, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.unlock()
	if s.client == nil {
		c, err := s.build()
		if err != nil {
			return nil, err
		}
		s.client = c
	}
	now := s.now()
	if !force && s.token != "" && (s.renewAt.IsZero() || now.Before(s.renewAt)) {
		return s.client, nil
	}
	if !force && s.token != "" && s.renewable && now.Before(s.expires) {
		sec, err := s.client.Logical().WriteWithContext(ctx, "auth/token/renew-self", map[string]any{})
		if err == nil && sec != nil && sec.Auth != nil {
			s.renewals.Add(1)
			s.setToken(sec.Auth)
			return s.client, nil
		}
		if ctx.Err() != nil {
			return nil, mapBao(ctx, "renewing the OpenBao token", err)
		}
		// fall through: log in again
	}
	if err := s.login(ctx); err != nil {
		return nil, err
	}
	return s.client, nil
}

func (s *session) setToken(a *bao.SecretAuth) {
	s.token = a.ClientToken
	s.client.SetToken(a.ClientToken)
	s.renewable = a.Renewable
	if a.LeaseDuration > 0 {
		ttl := time.Duration(a.LeaseDuration) * time.Second
		now := s.now()
		s.expires = now.Add(ttl)
		s.renewAt = now.Add(ttl * 2 / 3)
	} else {
		s.expires, s.renewAt = time.Time{}, time.Time{}
	}
}

// login exchanges the configured identity for a token. The login request carries no token.
func (s *session) login(ctx context.Context) error {
	a := s.cfg.Auth
	if a == nil {
		return &Error{Code: codes.FailedPrecondition, Field: "auth", Kind: keychain.ErrDenied,
			Msg: "no OpenBao auth configured: set auth.method (kubernetes, approle or cert)"}
	}
	data := map[string]any{}
	switch a.Method {
	case AuthKubernetes:
		jwt, err := readSecretFile("auth.tokenFile", a.TokenFile)
		if err != nil {
			return err
		}
		data["role"], data["jwt"] = a.Role, jwt
	case AuthAppRole:
		roleID := a.RoleID
		if a.RoleIDFile != "" {
			r, err := readSecretFile("auth.roleIdFile", a.RoleIDFile)
			if err != nil {
				return err
			}
			roleID = r
		}
		sid, err := readSecretFile("auth.secretIdFile", a.SecretIDFile)
		if err != nil {
			return err
		}
		data["role_id"], data["secret_id"] = roleID, sid
	case AuthCert:
		if a.Role != "" {
			data["name"] = a.Role
		}
	}
	s.token = ""
	s.client.ClearToken()
	sec, err := s.client.Logical().WriteWithContext(ctx, "auth/"+a.Mount+"/login", data)
	if err != nil {
		e := mapBao(ctx, a.Method+" login at auth/"+a.Mount, err)
		if e.Code == codes.InvalidArgument || e.SDK != nil || e.Code == codes.NotFound {
			return authErr("auth", "OpenBao %s login at auth/%s failed: %s", a.Method, a.Mount, e.Msg)
		}
		return e
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return authErr("auth", "OpenBao %s login at auth/%s returned no token", a.Method, a.Mount)
	}
	s.logins.Add(1)
	s.setToken(sec.Auth)
	return nil
}

func readSecretFile(field, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", &Error{Code: codes.FailedPrecondition, Field: field, Kind: keychain.ErrDenied, Msg: fmt.Sprintf("%s: cannot read %s: %v", field, path, errors.Unwrap(err))}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil || len(b) > maxSecretFileBytes {
		return "", &Error{Code: codes.FailedPrecondition, Field: field, Kind: keychain.ErrDenied, Msg: fmt.Sprintf("%s: %s is unreadable or larger than %d bytes", field, path, maxSecretFileBytes)}
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", &Error{Code: codes.FailedPrecondition, Field: field, Kind: keychain.ErrDenied, Msg: fmt.Sprintf("%s: %s is empty", field, path)}
	}
	return v, nil
}

// backend is the configured state shared by the operations, management and Wrapper APIs; replaced whole on
// Configure.
type backend struct {
	cfg  *Config
	sess *session
	now  func() time.Time

	// stateMu serialises read-modify-write of mount state within this process.
	stateMu sync.Mutex

	rolesMu sync.Mutex
	roles   map[string]*session
}

func newBackend(cfg *Config) *backend {
	return &backend{cfg: cfg, sess: &session{cfg: cfg, now: time.Now, mu: make(chan struct{}, 1)}, now: time.Now, roles: map[string]*session{}}
}

// withBudget bounds a call: the caller's deadline, or the configured budget when there is none.
func (b *backend) withBudget(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, b.cfg.budget)
}

// do runs fn with an authenticated client. A refused token (expired mid-call, revoked, or unknown after a server
// restart) is replaced by a fresh login once, then fn is retried; any other failure is classified, and an
// unreachable or unavailable server is explained through sys/health (sealed, uninitialised, standby).
func (b *backend) do(ctx context.Context, bd *binding, op string, fn func(l logical) (*bao.Secret, error)) (*bao.Secret, error) {
	sess := b.sessionFor(bd)
	c, err := sess.get(ctx, false)
	if err != nil {
		return nil, b.explain(ctx, op, err)
	}
	sec, err := fn(c.Logical())
	if err == nil {
		return sec, nil
	}
	var re *bao.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusForbidden && ctx.Err() == nil {
		c, lerr := sess.get(ctx, true)
		if lerr != nil {
			return nil, b.explain(ctx, op, lerr)
		}
		if sec, err = fn(c.Logical()); err == nil {
			return sec, nil
		}
	}
	return nil, b.explain(ctx, op, err)
}

// maxRoleSessions bounds the per-role sessions; an evicted role only costs a new login.
const maxRoleSessions = 1024

// sessionFor returns the session a call for bd uses. With Kubernetes auth, an Account that names its own OpenBao
// role (spec.auth.openBaoRole) is served by a login with that role, so the server's policy for the role confines
// what the call can reach in addition to the plugin's mount binding; otherwise the platform session.
func (b *backend) sessionFor(bd *binding) *session {
	a := b.cfg.Auth
	if bd == nil || bd.role == "" || a == nil || a.Method != AuthKubernetes || bd.role == a.Role {
		return b.sess
	}
	b.rolesMu.Lock()
	defer b.rolesMu.Unlock()
	if s := b.roles[bd.role]; s != nil {
		return s
	}
	if len(b.roles) >= maxRoleSessions {
		for k := range b.roles {
			delete(b.roles, k)
			break
		}
	}
	cfg := *b.cfg
	auth := *a
	auth.Role = bd.role
	cfg.Auth = &auth
	s := &session{cfg: &cfg, now: b.now, mu: make(chan struct{}, 1)}
	b.roles[bd.role] = s
	return s
}

// explain classifies err and, when the server looks unavailable, asks sys/health why.
func (b *backend) explain(ctx context.Context, op string, err error) *Error {
	e := mapBao(ctx, op, err)
	if e.Code != codes.Unavailable || errors.Is(e, ErrSealed) || errors.Is(e, ErrUninitialized) || ctx.Err() != nil {
		return e
	}
	if f := b.failover(op, err); f != nil {
		return f
	}
	if h := b.health(ctx); h != nil && h.Kind != nil {
		h.Msg = op + ": " + h.Msg
		return h
	}
	return e
}

// binding is a tenant, its transit mount, and the OpenBao role the Account names (spec.auth.openBaoRole), if any.
type binding struct{ tenant, mount, role string }

// Access data / configuration fields.
const (
	FieldTenant = "tenant"
	FieldMount  = "mount"
	FieldRole   = "openBaoRole"
)

func str(s *structpb.Struct, k string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(s.GetFields()[k].GetStringValue())
}

// bind reads the tenant (set by the platform, never by the tenant itself) and derives its mount; access data that
// names a mount must name exactly that one, so a tenant cannot reach another tenant's mount.
func (b *backend) bind(values *structpb.Struct) (*binding, error) {
	tenant, mount := str(values, FieldTenant), str(values, FieldMount)
	if tenant == "" {
		return nil, accessDataErr(FieldTenant, "access data has no tenant")
	}
	if !tenantRE.MatchString(tenant) {
		return nil, accessDataErr(FieldTenant, "tenant %q is not a tenant name ([a-z0-9-], at most 63)", trunc(tenant))
	}
	want := b.cfg.MountFor(tenant)
	if mount != "" && strings.Trim(mount, "/") != want {
		return nil, authErr(FieldMount, "tenant %q may use only its own transit mount %s, not %s", tenant, want, trunc(mount))
	}
	role := str(values, FieldRole)
	if role != "" && !roleRE.MatchString(role) {
		return nil, accessDataErr(FieldRole, "openBaoRole %q is not a role name", trunc(role))
	}
	return &binding{tenant: tenant, mount: want, role: role}, nil
}

// mountState is what the plugin keeps about a tenant mount, stored as JSON in the mount's description (OpenBao's
// transit keys carry no free metadata): the owning tenant, disabled keys, keys pending deletion (name → due unix
// time) and trust records.
type mountState struct {
	Apeiro   string            `json:"apeiro"`
	Tenant   string            `json:"tenant"`
	Disabled []string          `json:"disabled,omitempty"`
	Pending  map[string]int64  `json:"pending,omitempty"`
	Trust    map[string]string `json:"trust,omitempty"`
	// Byok: BYOK keys waiting for material, and outstanding import tokens (byok.go).
	Byok map[string]*byokEntry `json:"byok,omitempty"`
}

const stateMarker = "apeiro-cmk keystore"

func (st *mountState) disabled(name string) bool {
	for _, d := range st.Disabled {
		if d == name {
			return true
		}
	}
	return false
}

func (st *mountState) setDisabled(name string, on bool) {
	out := st.Disabled[:0]
	for _, d := range st.Disabled {
		if d != name {
			out = append(out, d)
		}
	}
	if on {
		out = append(out, name)
	}
	st.Disabled = out
}

// readState reads the tenant mount's state; a missing mount, or one that is not this tenant's keystore, is an
// authentication error (the access data names no keystore of the tenant).
func (b *backend) readState(ctx context.Context, bd *binding) (*mountState, error) {
	sec, err := b.do(ctx, bd, "reading mount "+bd.mount, func(l logical) (*bao.Secret, error) {
		return l.ReadWithContext(ctx, "sys/mounts/"+bd.mount)
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) && (e.Code == codes.NotFound || e.Code == codes.InvalidArgument) {
			return nil, authErr(FieldMount, "transit mount %s of tenant %q does not exist", bd.mount, bd.tenant)
		}
		return nil, err
	}
	if sec == nil || sec.Data == nil {
		return nil, authErr(FieldMount, "transit mount %s of tenant %q does not exist", bd.mount, bd.tenant)
	}
	if t, _ := sec.Data["type"].(string); t != "" && t != "transit" {
		return nil, authErr(FieldMount, "mount %s is a %s engine, not transit", bd.mount, t)
	}
	desc, _ := sec.Data["description"].(string)
	st := &mountState{}
	if err := json.Unmarshal([]byte(desc), st); err != nil || st.Apeiro != stateMarker {
		return nil, authErr(FieldMount, "mount %s is not an apeiro-cmk keystore", bd.mount)
	}
	if st.Tenant != bd.tenant {
		return nil, authErr(FieldTenant, "mount %s belongs to keystore %q, not %q", bd.mount, st.Tenant, bd.tenant)
	}
	return st, nil
}

func (b *backend) writeState(ctx context.Context, bd *binding, st *mountState) error {
	raw, _ := json.Marshal(st)
	_, err := b.do(ctx, bd, "updating mount "+bd.mount, func(l logical) (*bao.Secret, error) {
		return l.WriteWithContext(ctx, "sys/mounts/"+bd.mount+"/tune", map[string]any{"description": string(raw)})
	})
	if err != nil {
		stateCache.Delete(b.stateKey(bd))
		return err
	}
	stateCache.Store(b.stateKey(bd), cachedState{st: st, at: b.now()})
	return nil
}

// stateTTL bounds how long Wrap/Unwrap trust a mount state read earlier. Reading it costs a sys/mounts round trip
// (~1.2 ms on the test peer, more than the transit call itself), so the hot path reuses it briefly. Every state
// change made in this process replaces the cached entry at once (all backends of the process share the cache); a
// change made by another process (a DisableKey through CMK's external plugin) is seen within stateTTL.
const stateTTL = 2 * time.Second

type cachedState struct {
	st *mountState
	at time.Time
}

// stateCache maps address|mount to the last state read or written. Only mounts that exist and belong to their tenant
// are cached (a failed read removes the entry), so its size is bounded by the server's keystore mounts.
var stateCache sync.Map

func (b *backend) stateKey(bd *binding) string { return b.cfg.address() + "|" + bd.mount }

// cachedStateOf returns the mount state, from the cache when it is younger than stateTTL. Cached states are never
// mutated (updateState always works on a fresh read).
func (b *backend) cachedStateOf(ctx context.Context, bd *binding) (*mountState, error) {
	k := b.stateKey(bd)
	if v, ok := stateCache.Load(k); ok {
		if c := v.(cachedState); b.now().Sub(c.at) < stateTTL {
			return c.st, nil
		}
	}
	st, err := b.readState(ctx, bd)
	if err != nil {
		stateCache.Delete(k)
		return nil, err
	}
	stateCache.Store(k, cachedState{st: st, at: b.now()})
	return st, nil
}

// updateState applies fn to the mount state under the process-wide lock.
func (b *backend) updateState(ctx context.Context, bd *binding, fn func(st *mountState) error) error {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	st, err := b.readState(ctx, bd)
	if err != nil {
		return err
	}
	if err := fn(st); err != nil {
		return err
	}
	return b.writeState(ctx, bd, st)
}
