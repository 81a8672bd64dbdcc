package aws

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"
)

// Config is the yamlConfiguration of both AWS plugins. Every field is optional: with Configure("") the plugins load
// and resolve the platform identity (IRSA environment) lazily on the first call, so a profile naming them loads on a
// machine without AWS. See docs/keystore-aws.md.
//
//	region: eu-central-1                      # default region (else AWS_REGION, else us-east-1)
//	regions: [eu-central-1, eu-west-1]        # allowed key regions (empty = any AWS region name)
//	rolePattern: "apeiro-cmk-tenant-{tenant}" # the only role name (path/name) a tenant may name
//	accounts: ["111122223333"]                # allowed tenant AWS accounts (empty = any)
//	webIdentity: {roleArn: ..., tokenFile: ..., sessionName: apeiro-cmk}  # else AWS_ROLE_ARN / AWS_WEB_IDENTITY_TOKEN_FILE
//	endpoints: {sts: http://127.0.0.1:5055, kms: ..., iam: ...}          # else AWS_ENDPOINT_URL_<SVC> / AWS_ENDPOINT_URL
//	callTimeout: 10s                          # per HTTP attempt
//	budget: 30s                               # per RPC when the caller set no deadline
//	maxAttempts: 4                            # per AWS call (throttling, connection errors), backoff ≤ 2 s
//	sessionDuration: 1h                       # of the tenant role sessions (15m..12h)
//	defaultDeletionWindowDays: 30             # DeleteKey without window (KMS allows 7..30)
//	supportedregions: {source: embedded, value: '{"regions":[...]}'}  # injected by CMK (management)
type Config struct {
	Region                    string                    `json:"region,omitempty"`
	Regions                   []string                  `json:"regions,omitempty"`
	RolePattern               string                    `json:"rolePattern,omitempty"`
	Accounts                  []string                  `json:"accounts,omitempty"`
	WebIdentity               *WebIdentity              `json:"webIdentity,omitempty"`
	Endpoints                 *Endpoints                `json:"endpoints,omitempty"`
	CallTimeout               string                    `json:"callTimeout,omitempty"`
	Budget                    string                    `json:"budget,omitempty"`
	MaxAttempts               int                       `json:"maxAttempts,omitempty"`
	SessionDuration           string                    `json:"sessionDuration,omitempty"`
	DefaultDeletionWindowDays *int32                    `json:"defaultDeletionWindowDays,omitempty"`
	SupportedRegions          *keystoreconfig.SourceRef `json:"supportedregions,omitempty"`

	callTimeout, budget, sessionDuration time.Duration
	warnings                             keystoreconfig.Warnings
}

// WebIdentity overrides the IRSA environment the EKS pod identity webhook sets.
type WebIdentity struct {
	RoleARN     string `json:"roleArn,omitempty"`
	TokenFile   string `json:"tokenFile,omitempty"`
	SessionName string `json:"sessionName,omitempty"`
}

// Endpoints override the AWS service endpoints (tests, VPC endpoints, FIPS).
type Endpoints struct {
	STS string `json:"sts,omitempty"`
	KMS string `json:"kms,omitempty"`
	IAM string `json:"iam,omitempty"`
}

// Defaults.
const (
	DefaultRolePattern        = "apeiro-cmk-tenant-{tenant}"
	defaultCallTimeout        = 10 * time.Second
	defaultBudget             = 30 * time.Second
	defaultMaxAttempts        = 4
	defaultSessionDuration    = time.Hour
	defaultDeletionWindowDays = 30
	minDeletionWindowDays     = 7
	maxDeletionWindowDays     = 30
	defaultSessionName        = "apeiro-cmk"
)

// staticKeyNames are configuration / access-data keys that carry static AWS credentials (compared lower-case without
// '_' and '-'). They are refused wherever they appear: the plugin authenticates only through IRSA.
var staticKeyNames = []string{
	"accesskeyid", "secretaccesskey", "sessiontoken", "awsaccesskeyid", "awssecretaccesskey", "awssessiontoken",
	"accesskey", "secretkey", "secretaccesskeyid",
}

// ErrStaticCredentials marks a refusal of static AWS credentials.
var ErrStaticCredentials = errors.New("static AWS credentials are refused: the AWS keystore authenticates only through IRSA (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE)")

func isStaticKeyName(k string) bool {
	n := strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(k))
	return slices.Contains(staticKeyNames, n)
}

// findStaticKey returns the path of the first static-credential key in a decoded YAML/JSON value, or "".
func findStaticKey(v any, path string) string {
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if isStaticKeyName(k) {
				return p
			}
			if s := findStaticKey(t[k], p); s != "" {
				return s
			}
		}
	case []any:
		for i, e := range t {
			if s := findStaticKey(e, fmt.Sprintf("%s[%d]", path, i)); s != "" {
				return s
			}
		}
	case string:
		// CMK's secret-based auth type names static keys explicitly.
		if t == "AUTH_TYPE_SECRET" {
			return path
		}
	}
	return ""
}

// refuseStaticInStruct checks access data for static credentials.
func refuseStaticInStruct(s *structpb.Struct, what string) error {
	if s == nil {
		return nil
	}
	if p := findStaticKey(s.AsMap(), ""); p != "" {
		return fmt.Errorf("%s: %q: %w", what, p, ErrStaticCredentials)
	}
	return nil
}

// staticEnv lists static-credential variables set in the environment.
func staticEnv() []string {
	var out []string
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		if os.Getenv(k) != "" {
			out = append(out, k)
		}
	}
	return out
}

// ParseConfig parses and validates the YAML; errors name the field.
func ParseConfig(data string) (*Config, error) {
	const prefix = "invalid aws keystore configuration"
	if len(data) > keystoreconfig.MaxConfigBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", prefix, len(data), keystoreconfig.MaxConfigBytes)
	}
	if strings.TrimSpace(data) != "" {
		var raw any
		if err := yaml.Unmarshal([]byte(data), &raw); err == nil {
			if p := findStaticKey(raw, ""); p != "" {
				return nil, fmt.Errorf("%s: %q: %w", prefix, p, ErrStaticCredentials)
			}
		}
	}
	var c Config
	w, err := keystoreconfig.Decode(data, &c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", prefix, err)
	}
	c.warnings = w
	if c.Region != "" && !validRegion(c.Region) {
		return nil, fmt.Errorf("%s: region %q is not an AWS region name", prefix, c.Region)
	}
	for _, r := range c.Regions {
		if !validRegion(r) {
			return nil, fmt.Errorf("%s: regions: %q is not an AWS region name", prefix, r)
		}
	}
	if c.RolePattern == "" {
		c.RolePattern = DefaultRolePattern
	}
	if strings.Count(c.RolePattern, "{tenant}") != 1 || !roleNameRE.MatchString(strings.ReplaceAll(c.RolePattern, "{tenant}", "t")) {
		return nil, fmt.Errorf("%s: rolePattern %q must be an IAM role path/name containing {tenant} exactly once", prefix, c.RolePattern)
	}
	for _, a := range c.Accounts {
		if !accountRE.MatchString(a) {
			return nil, fmt.Errorf("%s: accounts: %q is not a 12-digit AWS account id", prefix, a)
		}
	}
	if wi := c.WebIdentity; wi != nil {
		if wi.RoleARN != "" {
			if _, err := ParseRoleARN(wi.RoleARN); err != nil {
				return nil, fmt.Errorf("%s: webIdentity.roleArn: %w", prefix, err)
			}
		}
		if wi.SessionName != "" && (len(wi.SessionName) > 32 || sessionBad.MatchString(wi.SessionName)) {
			return nil, fmt.Errorf("%s: webIdentity.sessionName must be at most 32 characters of [A-Za-z0-9+=,.@_-]", prefix)
		}
	}
	if e := c.Endpoints; e != nil {
		for name, v := range map[string]string{"sts": e.STS, "kms": e.KMS, "iam": e.IAM} {
			if v == "" {
				continue
			}
			if err := checkEndpoint(v); err != nil {
				return nil, fmt.Errorf("%s: endpoints.%s: %w", prefix, name, err)
			}
		}
	}
	if c.callTimeout, err = duration(c.CallTimeout, defaultCallTimeout, time.Second, 5*time.Minute); err != nil {
		return nil, fmt.Errorf("%s: callTimeout: %w", prefix, err)
	}
	if c.budget, err = duration(c.Budget, defaultBudget, time.Second, 10*time.Minute); err != nil {
		return nil, fmt.Errorf("%s: budget: %w", prefix, err)
	}
	if c.sessionDuration, err = duration(c.SessionDuration, defaultSessionDuration, 15*time.Minute, 12*time.Hour); err != nil {
		return nil, fmt.Errorf("%s: sessionDuration: %w", prefix, err)
	}
	if c.MaxAttempts < 0 || c.MaxAttempts > 10 {
		return nil, fmt.Errorf("%s: maxAttempts must be 1..10", prefix)
	}
	if w := c.DefaultDeletionWindowDays; w != nil && (*w < minDeletionWindowDays || *w > maxDeletionWindowDays) {
		return nil, fmt.Errorf("%s: defaultDeletionWindowDays must be %d..%d (AWS KMS waiting period)", prefix, minDeletionWindowDays, maxDeletionWindowDays)
	}
	if c.SupportedRegions != nil {
		if _, err := keystoreconfig.ParseRegions(c.SupportedRegions); err != nil {
			return nil, fmt.Errorf("%s: supportedregions: %w", prefix, err)
		}
	}
	return &c, nil
}

func checkEndpoint(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return fmt.Errorf("%q must be an http(s) URL without credentials", truncate(v))
	}
	return nil
}

func duration(s string, def, lo, hi time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", truncate(s))
	}
	if d < lo || d > hi {
		return 0, fmt.Errorf("%s is outside %s..%s", d, lo, hi)
	}
	return d, nil
}

func (c *Config) maxAttempts() int {
	if c.MaxAttempts == 0 {
		return defaultMaxAttempts
	}
	return c.MaxAttempts
}

func (c *Config) deletionWindow() int32 {
	if c.DefaultDeletionWindowDays != nil {
		return *c.DefaultDeletionWindowDays
	}
	return defaultDeletionWindowDays
}

// defaultRegion: configured, else the environment, else us-east-1.
func (c *Config) defaultRegion() string {
	switch {
	case c.Region != "":
		return c.Region
	case len(c.Regions) > 0:
		return c.Regions[0]
	case validRegion(os.Getenv("AWS_REGION")):
		return os.Getenv("AWS_REGION")
	case validRegion(os.Getenv("AWS_DEFAULT_REGION")):
		return os.Getenv("AWS_DEFAULT_REGION")
	}
	return "us-east-1"
}

func (c *Config) regionAllowed(r string) bool {
	if !validRegion(r) {
		return false
	}
	return len(c.Regions) == 0 || slices.Contains(c.Regions, r)
}

func (c *Config) accountAllowed(a string) bool {
	return len(c.Accounts) == 0 || slices.Contains(c.Accounts, a)
}

// roleNameFor is the only role name tenant may use.
func (c *Config) roleNameFor(tenant string) string {
	return strings.ReplaceAll(c.RolePattern, "{tenant}", tenant)
}

func (c *Config) webIdentity() (roleARN, tokenFile, session string) {
	if wi := c.WebIdentity; wi != nil {
		roleARN, tokenFile, session = wi.RoleARN, wi.TokenFile, wi.SessionName
	}
	if roleARN == "" {
		roleARN = os.Getenv("AWS_ROLE_ARN")
	}
	if tokenFile == "" {
		tokenFile = os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE")
	}
	if session == "" {
		session = os.Getenv("AWS_ROLE_SESSION_NAME")
	}
	if session == "" || len(session) > 64 || sessionBad.MatchString(session) {
		session = defaultSessionName
	}
	return roleARN, tokenFile, session
}

// endpoint resolves a service endpoint: configuration, AWS_ENDPOINT_URL_<SVC>, AWS_ENDPOINT_URL, else "" (AWS).
// Resolving it here, rather than relying on the SDK's shared-config chain, is what makes the web-identity STS
// client honour it too.
func (c *Config) endpoint(svc string) string {
	if e := c.Endpoints; e != nil {
		switch svc {
		case "STS":
			if e.STS != "" {
				return e.STS
			}
		case "KMS":
			if e.KMS != "" {
				return e.KMS
			}
		case "IAM":
			if e.IAM != "" {
				return e.IAM
			}
		}
	}
	for _, k := range []string{"AWS_ENDPOINT_URL_" + svc, "AWS_ENDPOINT_URL"} {
		if v := os.Getenv(k); v != "" && checkEndpoint(v) == nil {
			return v
		}
	}
	return ""
}

// supportedRegions for CreateKeystore: CMK's injected list wins, else regions, else the default region.
func (c *Config) supportedRegions() ([]keystoreconfig.Region, error) {
	if c.SupportedRegions != nil {
		return keystoreconfig.ParseRegions(c.SupportedRegions)
	}
	regions := c.Regions
	if len(regions) == 0 {
		regions = []string{c.defaultRegion()}
	}
	out := make([]keystoreconfig.Region, 0, len(regions))
	for _, r := range regions {
		out = append(out, keystoreconfig.Region{Name: r, TechnicalName: r})
	}
	return out, nil
}
