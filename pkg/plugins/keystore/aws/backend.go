package aws

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"google.golang.org/grpc/codes"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// kmsAPI lists exactly the KMS calls the plugin makes.
type kmsAPI interface {
	DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, optFns ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
	CreateKey(ctx context.Context, in *kms.CreateKeyInput, optFns ...func(*kms.Options)) (*kms.CreateKeyOutput, error)
	CreateAlias(ctx context.Context, in *kms.CreateAliasInput, optFns ...func(*kms.Options)) (*kms.CreateAliasOutput, error)
	EnableKey(ctx context.Context, in *kms.EnableKeyInput, optFns ...func(*kms.Options)) (*kms.EnableKeyOutput, error)
	DisableKey(ctx context.Context, in *kms.DisableKeyInput, optFns ...func(*kms.Options)) (*kms.DisableKeyOutput, error)
	ScheduleKeyDeletion(ctx context.Context, in *kms.ScheduleKeyDeletionInput, optFns ...func(*kms.Options)) (*kms.ScheduleKeyDeletionOutput, error)
	GetParametersForImport(ctx context.Context, in *kms.GetParametersForImportInput, optFns ...func(*kms.Options)) (*kms.GetParametersForImportOutput, error)
	ImportKeyMaterial(ctx context.Context, in *kms.ImportKeyMaterialInput, optFns ...func(*kms.Options)) (*kms.ImportKeyMaterialOutput, error)
	ListKeyRotations(ctx context.Context, in *kms.ListKeyRotationsInput, optFns ...func(*kms.Options)) (*kms.ListKeyRotationsOutput, error)
	Encrypt(ctx context.Context, in *kms.EncryptInput, optFns ...func(*kms.Options)) (*kms.EncryptOutput, error)
	Decrypt(ctx context.Context, in *kms.DecryptInput, optFns ...func(*kms.Options)) (*kms.DecryptOutput, error)
}

// stsAPI lists exactly the STS calls: the web-identity exchange, role chaining, and the platform's own identity.
type stsAPI interface {
	AssumeRoleWithWebIdentity(ctx context.Context, in *sts.AssumeRoleWithWebIdentityInput, optFns ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error)
	AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, optFns ...func(*sts.Options)) (*sts.AssumeRoleOutput, error)
	GetCallerIdentity(ctx context.Context, in *sts.GetCallerIdentityInput, optFns ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error)
}

// iamAPI lists exactly the IAM calls of the management plugin (keystore roles).
type iamAPI interface {
	CreateRole(ctx context.Context, in *iam.CreateRoleInput, optFns ...func(*iam.Options)) (*iam.CreateRoleOutput, error)
	GetRole(ctx context.Context, in *iam.GetRoleInput, optFns ...func(*iam.Options)) (*iam.GetRoleOutput, error)
	PutRolePolicy(ctx context.Context, in *iam.PutRolePolicyInput, optFns ...func(*iam.Options)) (*iam.PutRolePolicyOutput, error)
	DeleteRolePolicy(ctx context.Context, in *iam.DeleteRolePolicyInput, optFns ...func(*iam.Options)) (*iam.DeleteRolePolicyOutput, error)
	DeleteRole(ctx context.Context, in *iam.DeleteRoleInput, optFns ...func(*iam.Options)) (*iam.DeleteRoleOutput, error)
	TagRole(ctx context.Context, in *iam.TagRoleInput, optFns ...func(*iam.Options)) (*iam.TagRoleOutput, error)
	UntagRole(ctx context.Context, in *iam.UntagRoleInput, optFns ...func(*iam.Options)) (*iam.UntagRoleOutput, error)
}

// clientFactory builds the AWS clients; tests inject fakes through it.
type clientFactory struct {
	kms func(cfg sdkaws.Config, endpoint string) kmsAPI
	sts func(cfg sdkaws.Config, endpoint string) stsAPI
	iam func(cfg sdkaws.Config, endpoint string) iamAPI
}

func defaultFactory() clientFactory {
	return clientFactory{
		kms: func(cfg sdkaws.Config, ep string) kmsAPI {
			return kms.NewFromConfig(cfg, func(o *kms.Options) {
				if ep != "" {
					o.BaseEndpoint = sdkaws.String(ep)
				}
			})
		},
		sts: func(cfg sdkaws.Config, ep string) stsAPI {
			return sts.NewFromConfig(cfg, func(o *sts.Options) {
				if ep != "" {
					o.BaseEndpoint = sdkaws.String(ep)
				}
			})
		},
		iam: func(cfg sdkaws.Config, ep string) iamAPI {
			return iam.NewFromConfig(cfg, func(o *iam.Options) {
				if ep != "" {
					o.BaseEndpoint = sdkaws.String(ep)
				}
			})
		},
	}
}

// tenantKey identifies one cached set of tenant credentials and clients.
type tenantKey struct{ role, region, tenant string }

type tenantClients struct {
	creds *sdkaws.CredentialsCache
	kms   kmsAPI
}

// platform is the IRSA identity of the plugin's own pod, built lazily on first use.
type platform struct {
	roleARN RoleARN
	creds   *sdkaws.CredentialsCache
	base    sdkaws.Config // without credentials
	sts     stsAPI        // signed with the platform credentials; used for role chaining
	iam     iamAPI
	account string
	session string
}

// maxTenantClients bounds the credential/client cache; a flood of distinct roles only costs re-assuming.
const maxTenantClients = 4096

// backend is the configured state shared by the operations, management and Wrapper APIs. It is replaced as a whole
// on Configure, so a reconfiguration never mixes old and new settings within one call.
type backend struct {
	cfg     *Config
	factory clientFactory
	now     func() time.Time

	platOnce sync.Mutex
	plat     *platform

	mu      sync.Mutex
	tenants map[tenantKey]*tenantClients

	// stats for benchmarks and tests
	assumes atomic.Int64
}

func newBackend(cfg *Config, f clientFactory) *backend {
	return &backend{cfg: cfg, factory: f, now: time.Now, tenants: map[tenantKey]*tenantClients{}}
}

// baseConfig is an aws.Config without credentials: bounded HTTP (TLS ≥ 1.2, dial 3 s, per-attempt timeout) and the
// standard retryer (throttling and connection errors, exponential backoff ≤ 2 s, no client-side retry quota so a
// burst of throttling is not turned into instant failures). Retries stop when the caller's context ends.
func (b *backend) baseConfig(region string) sdkaws.Config {
	hc := awshttp.NewBuildableClient().
		WithTimeout(b.cfg.callTimeout).
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = 3 * time.Second }).
		WithTransportOptions(func(t *http.Transport) {
			if t.TLSClientConfig == nil {
				t.TLSClientConfig = &tls.Config{}
			}
			t.TLSClientConfig.MinVersion = tls.VersionTLS12
			t.TLSHandshakeTimeout = 5 * time.Second
			t.ResponseHeaderTimeout = b.cfg.callTimeout
			t.MaxIdleConnsPerHost = 64
		})
	attempts := b.cfg.maxAttempts()
	return sdkaws.Config{
		Region:     region,
		HTTPClient: hc,
		Retryer: func() sdkaws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = attempts
				o.MaxBackoff = 2 * time.Second
				o.RateLimiter = ratelimit.None
			})
		},
	}
}

// checkEnv refuses static keys in the environment: they would be the SDK's first choice in a default chain, and we
// never want them used (nor silently ignored).
func checkEnv() error {
	if vars := staticEnv(); len(vars) > 0 {
		return &Error{Code: codes.FailedPrecondition, Field: "env", Msg: fmt.Sprintf("%s set in the environment: %v", strings.Join(vars, ", "), ErrStaticCredentials), Kind: keychain.ErrDenied, Cause: ErrStaticCredentials}
	}
	return nil
}

// platformIdentity returns the IRSA identity, building it on first use.
func (b *backend) platformIdentity() (*platform, error) {
	if err := checkEnv(); err != nil {
		return nil, err
	}
	b.platOnce.Lock()
	defer b.platOnce.Unlock()
	if b.plat != nil {
		return b.plat, nil
	}
	roleARN, tokenFile, session := b.cfg.webIdentity()
	if roleARN == "" || tokenFile == "" {
		return nil, &Error{Code: codes.FailedPrecondition, Field: "webIdentity", Kind: keychain.ErrUnavailable,
			Msg: "no platform identity: AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE (IRSA) are not set and webIdentity is not configured"}
	}
	ra, err := ParseRoleARN(roleARN)
	if err != nil {
		return nil, &Error{Code: codes.FailedPrecondition, Field: "webIdentity.roleArn", Msg: "platform role: " + err.Error()}
	}
	region := b.cfg.defaultRegion()
	base := b.baseConfig(region)
	stsEP := b.cfg.endpoint("STS")
	// The web-identity exchange is unsigned (the token is the credential); its client has no credentials.
	anon := b.factory.sts(base, stsEP)
	provider := stscreds.NewWebIdentityRoleProvider(anon, ra.String(), &tokenFile2{path: tokenFile, now: b.now}, func(o *stscreds.WebIdentityRoleOptions) {
		o.RoleSessionName = session
	})
	creds := sdkaws.NewCredentialsCache(provider)
	signed := base.Copy()
	signed.Credentials = creds
	b.plat = &platform{roleARN: ra, creds: creds, base: base, sts: b.factory.sts(signed, stsEP), iam: b.factory.iam(signed, b.cfg.endpoint("IAM")), account: ra.Account, session: session}
	return b.plat, nil
}

// tenantKMS returns the KMS client acting as role for tenant in region: the platform identity assumes the role with
// ExternalId = tenant and session tag tenant=<tenant>. Credentials and client are cached per (role, region, tenant);
// aws.CredentialsCache refreshes them before expiry, single-flight, so a call does not re-fetch credentials.
func (b *backend) tenantKMS(role RoleARN, region, tenant string) (kmsAPI, error) {
	tc, err := b.tenantClient(role, region, tenant)
	if err != nil {
		return nil, err
	}
	return tc.kms, nil
}

func (b *backend) tenantClient(role RoleARN, region, tenant string) (*tenantClients, error) {
	k := tenantKey{role: role.String(), region: region, tenant: tenant}
	b.mu.Lock()
	tc := b.tenants[k]
	b.mu.Unlock()
	if tc != nil {
		return tc, nil
	}
	p, err := b.platformIdentity()
	if err != nil {
		return nil, err
	}
	prov := stscreds.NewAssumeRoleProvider(p.sts, role.String(), func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = sessionName("apeiro-cmk", tenant)
		o.ExternalID = sdkaws.String(tenant)
		o.Tags = []ststypes.Tag{{Key: sdkaws.String("tenant"), Value: sdkaws.String(tenant)}}
		o.Duration = b.cfg.sessionDuration
	})
	counted := sdkaws.CredentialsProviderFunc(func(ctx context.Context) (sdkaws.Credentials, error) {
		b.assumes.Add(1)
		return prov.Retrieve(ctx)
	})
	creds := sdkaws.NewCredentialsCache(counted)
	cfg := b.baseConfig(region)
	cfg.Credentials = creds
	tc = &tenantClients{creds: creds, kms: b.factory.kms(cfg, b.cfg.endpoint("KMS"))}
	b.mu.Lock()
	defer b.mu.Unlock()
	if existing := b.tenants[k]; existing != nil {
		return existing, nil
	}
	if len(b.tenants) >= maxTenantClients {
		for old := range b.tenants { // drop an arbitrary entry; it is rebuilt on demand
			delete(b.tenants, old)
			break
		}
	}
	b.tenants[k] = tc
	return tc, nil
}

// withBudget bounds a call: the caller's deadline, or the configured budget when there is none.
func (b *backend) withBudget(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, b.cfg.budget)
}

// tokenError is a problem with the projected web-identity token.
type tokenError struct{ msg string }

func (e *tokenError) Error() string { return e.msg }

// maxTokenBytes bounds the token file read (projected service-account tokens are ~1 KiB).
const maxTokenBytes = 16 << 10

// tokenFile2 reads the projected token on every exchange (the kubelet rotates it) and refuses a token whose exp
// has passed before sending it: STS would refuse it too, but the message here says which file and when.
type tokenFile2 struct {
	path string
	now  func() time.Time
}

func (f *tokenFile2) GetIdentityToken() ([]byte, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, &tokenError{msg: fmt.Sprintf("reading web-identity token: %v", err)}
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxTokenBytes+1))
	if err != nil {
		return nil, &tokenError{msg: fmt.Sprintf("reading web-identity token %s: %v", f.path, err)}
	}
	if len(b) > maxTokenBytes {
		return nil, &tokenError{msg: fmt.Sprintf("web-identity token %s is larger than %d bytes", f.path, maxTokenBytes)}
	}
	b = bytes.TrimSpace(b)
	exp, err := jwtExpiry(string(b))
	if err != nil {
		return nil, &tokenError{msg: fmt.Sprintf("web-identity token %s: %v", f.path, err)}
	}
	if !exp.IsZero() && !f.now().Before(exp) {
		return nil, &tokenError{msg: fmt.Sprintf("web-identity token %s expired at %s (is the projected service-account token volume mounted and refreshed?)", f.path, exp.UTC().Format(time.RFC3339))}
	}
	return b, nil
}

// jwtExpiry reads the exp claim of a JWT without verifying it (STS verifies). A token without exp has zero expiry.
func jwtExpiry(tok string) (time.Time, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return time.Time{}, fmt.Errorf("not a JWT (want header.payload.signature)")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, fmt.Errorf("JWT payload is not base64url")
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return time.Time{}, fmt.Errorf("JWT payload is not a JSON object")
	}
	if claims.Exp == nil {
		return time.Time{}, nil
	}
	f, err := claims.Exp.Float64()
	if err != nil || f < 0 || f > 1e11 {
		return time.Time{}, fmt.Errorf("JWT exp claim %q is not a time", claims.Exp.String())
	}
	return time.Unix(int64(f), 0), nil
}
