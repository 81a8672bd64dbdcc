// Package pluginbacked answers the admission webhook's policy questions with OpenKCM plugins: the region/audience
// policy from the System Information Service plugin (FR-4.2) and L1 key reachability from keystore operations
// plugins (FR-3.3). Answers are cached so that the admission hot path rarely waits on a plugin, and a plugin outage
// falls back to the last known answer where one exists.
package pluginbacked

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	sisv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apeirora/apeiro-cmk/internal/ttlcache"
	"github.com/apeirora/apeiro-cmk/pkg/admission"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// SISClient is the one SystemInformationService call the region policy makes.
type SISClient interface {
	Get(ctx context.Context, in *sisv1.GetRequest, opts ...grpc.CallOption) (*sisv1.GetResponse, error)
}

// RegionType is the SIS resource type of Platform Mesh regions; metadata key AudiencesKey lists the audiences
// allowed in the region (comma-separated; absent = any).
const (
	RegionType   = "region"
	AudiencesKey = "audiences"
)

// regionRE is the shape of a region name (a DNS label, as in the Tenant CRD).
var regionRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// regionCallTimeout bounds one shared SIS call.
const regionCallTimeout = 10 * time.Second

type regionAnswer struct {
	known     bool
	audiences []string // nil = any
	at        time.Time
}

// RegionPolicy implements admission.RegionPolicy with SIS lookups of type "region".
type RegionPolicy struct {
	SIS SISClient
	TTL time.Duration // default 1 min

	cache ttlcache.Cache[regionAnswer]
}

// CheckRegion implements admission.RegionPolicy.
func (p *RegionPolicy) CheckRegion(ctx context.Context, region string, audiences []string) error {
	a, err := p.lookup(ctx, region)
	if err != nil {
		return err
	}
	if !a.known {
		return &admission.PolicyError{Field: "spec.region", Msg: fmt.Sprintf("region %q is not a Platform Mesh region (unknown to the system information service)", region)}
	}
	if a.audiences == nil {
		return nil
	}
	for _, aud := range audiences {
		if !slices.Contains(a.audiences, aud) {
			return &admission.PolicyError{Field: "spec.oidcProvider.audiences", Msg: fmt.Sprintf("audience %q is not allowed in region %q", aud, region)}
		}
	}
	return nil
}

func (p *RegionPolicy) lookup(ctx context.Context, region string) (regionAnswer, error) {
	ttl := p.TTL
	if ttl <= 0 {
		ttl = time.Minute
	}
	if a, ok := p.cache.Get(region); ok {
		return a, nil
	}
	// SIS ids need at least 3 characters (protovalidate); shorter regions cannot exist there. Anything that is not a
	// DNS label cannot be a region either, and is answered without asking (or caching: the cache stays bounded by
	// the plausible names a writer can invent, and by the cache bound, ttlcache.DefaultMax).
	if len(region) < 3 || !regionRE.MatchString(region) {
		return regionAnswer{known: false}, nil
	}
	// Concurrent misses of one region share one SIS call; each caller still stops waiting when its context ends.
	ch := p.cache.Do(region, func() (regionAnswer, error) {
		// Detached from the first caller, so one caller giving up does not fail the call for the others.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), regionCallTimeout)
		defer cancel()
		resp, err := p.SIS.Get(cctx, &sisv1.GetRequest{Id: region, Type: RegionType})
		var a regionAnswer
		switch {
		case err == nil:
			a = regionAnswer{known: true, at: time.Now()}
			if v, ok := resp.GetMetadata()[AudiencesKey]; ok {
				a.audiences = []string{}
				for _, s := range strings.Split(v, ",") {
					if s = strings.TrimSpace(s); s != "" {
						a.audiences = append(a.audiences, s)
					}
				}
			}
		case status.Code(err) == codes.NotFound:
			a = regionAnswer{known: false, at: time.Now()}
		default:
			return regionAnswer{}, err
		}
		p.cache.Put(region, a, ttl) // regions are few; a flood of invented names only costs re-asking
		return a, nil
	})
	var r ttlcache.Result[regionAnswer]
	select {
	case r = <-ch:
	case <-ctx.Done():
		return regionAnswer{}, fmt.Errorf("asking the system information service about region %q: %w", region, ctx.Err())
	}
	if r.Err != nil {
		if stale, ok := p.cache.Stale(region); ok { // stale answer beats no answer during an outage
			return stale, nil
		}
		return regionAnswer{}, fmt.Errorf("asking the system information service about region %q: %w", region, r.Err)
	}
	return r.Val, nil
}

// KeyOpsClient is the one keystore operations call the prober makes.
type KeyOpsClient interface {
	GetKey(ctx context.Context, in *operationsv1.GetKeyRequest, opts ...grpc.CallOption) (*operationsv1.GetKeyResponse, error)
}

// KeyProber implements keychain.Prober with GetKey on the keystore plugin named for the Account's keystore. Only a
// key whose GetKey state is ENABLED answers: a key that exists but is disabled or pending deletion is as unusable for
// wrapping as a missing one (*keychain.KeyStateError).
//
// Probes are deduplicated: concurrent probes of the same key with the same instance configuration share one
// backend call (1,000 admissions of Accounts on a cold key make one GetKey), and a positive answer is cached for
// TTL. The shared call runs with its own budget (CallTimeout), detached from the first caller, so a caller that
// gives up (its admission budget ran out) neither cancels the call for the others nor waits beyond its own deadline.
// Negative answers (missing, not enabled) are not cached: a key created or enabled a moment later must be seen at once.
type KeyProber struct {
	// Client returns the operations client for a keystore type (e.g. "aws" → the AWS plugin); an error means no
	// plugin serves that keystore.
	Client func(keystore cmkv1.KeystoreType) (KeyOpsClient, error)
	// InstanceConfig returns the keystore instance configuration for the Account (region, auth references, and
	// the access data the keychain adds for the embedded keystore).
	InstanceConfig func(a *cmkv1.Account) (*structpb.Struct, error)
	// TTL of positive answers (default 30 s): a key that answered is not asked again on every write.
	TTL time.Duration
	// CallTimeout bounds one shared backend call (default 10 s).
	CallTimeout time.Duration

	seen  ttlcache.Cache[struct{}] // positive answers (bounded by ttlcache.DefaultMax); Do deduplicates concurrent probes
	calls atomic.Int64
}

// ErrNoPlugin is returned when no keystore plugin serves an Account's keystore type.
var ErrNoPlugin = errors.New("no keystore plugin serves this keystore")

// BackendCalls is the number of GetKey calls made so far (tests and benchmarks).
func (p *KeyProber) BackendCalls() int64 { return p.calls.Load() }

// ProbeKey implements keychain.Prober. A dry-run context (keychain.WithDryRun) gets the same answer but leaves the
// cache untouched when it made the call.
func (p *KeyProber) ProbeKey(ctx context.Context, a *cmkv1.Account) error {
	ttl := p.TTL
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	cfg := &structpb.Struct{}
	if p.InstanceConfig != nil {
		var err error
		if cfg, err = p.InstanceConfig(a); err != nil {
			return fmt.Errorf("building keystore configuration: %w", err)
		}
	}
	// The cache key includes the instance configuration (namespace, credentials): a key that answered with one
	// Account's credentials says nothing about another Account naming the same key ID with other credentials.
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encoding keystore configuration: %w", err)
	}
	sum := sha256.Sum256(raw)
	id := string(a.Spec.Keystore) + "\x00" + a.Spec.Region + "\x00" + a.Spec.KeyRef + "\x00" + string(sum[:])
	if _, ok := p.seen.Get(id); ok {
		return nil
	}
	c, err := p.Client(a.Spec.Keystore)
	if err != nil {
		return fmt.Errorf("%w (%s): %v", ErrNoPlugin, a.Spec.Keystore, err)
	}
	dry := keychain.IsDryRun(ctx)
	ch := p.seen.Do(id, func() (struct{}, error) {
		// A shared call that finished between our cache miss and this one already answered.
		if _, ok := p.seen.Get(id); ok {
			return struct{}{}, nil
		}
		callTimeout := p.CallTimeout
		if callTimeout <= 0 {
			callTimeout = 10 * time.Second
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
		defer cancel()
		p.calls.Add(1)
		resp, err := c.GetKey(cctx, &operationsv1.GetKeyRequest{Parameters: &operationsv1.RequestParameters{
			Config: &commonv1.KeystoreInstanceConfig{Values: cfg},
			KeyId:  a.Spec.KeyRef,
		}})
		if err == nil {
			err = enabled(resp.GetStatus()) // a disabled key exists but does not answer; never cached
		}
		if err == nil && !dry {
			p.seen.Put(id, struct{}{}, ttl)
		}
		return struct{}{}, err
	})
	select {
	case <-ctx.Done():
		return fmt.Errorf("keystore %s: %w", a.Spec.Keystore, ctx.Err())
	case r := <-ch:
		err = r.Err
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, keychain.ErrKeyDisabled):
		return err
	case status.Code(err) == codes.NotFound:
		return fmt.Errorf("%w: %s", keychain.ErrKeyNotFound, status.Convert(err).Message())
	case bindingRefused(err):
		return fmt.Errorf("%w: %s", keychain.ErrTenantBinding, bindingDetail(err))
	case status.Code(err) == codes.DeadlineExceeded:
		return fmt.Errorf("keystore %s: %w (%s)", a.Spec.Keystore, context.DeadlineExceeded, status.Convert(err).Message())
	default:
		return fmt.Errorf("keystore %s: %s", a.Spec.Keystore, status.Convert(err).Message())
	}
}

// StateEnabled is the GetKey status of a usable key. Every keystore plugin of this project (and upstream's
// keystore clients) reports key states as ENABLED, DISABLED, PENDING_DELETION, PENDING_IMPORT or UNKNOWN.
const StateEnabled = "ENABLED"

// stateRE is what a key state reported by a plugin may look like to be quoted back in a message.
var stateRE = regexp.MustCompile(`^[A-Z][A-Z_]{0,31}$`)

// enabled turns the key state of a GetKey answer into the probe's verdict: only an enabled key answers. A disabled
// key, one pending deletion or import, or a state the plugin left empty proves nothing about the key's usability,
// so it fails with a *keychain.KeyStateError (wrapping keychain.ErrKeyDisabled). The error carries the state only —
// never the plugin's other output — and only when it looks like a state name, so nothing else a backend put there
// travels into admission messages or conditions.
func enabled(state string) error {
	st := strings.ToUpper(strings.TrimSpace(state))
	switch {
	case st == StateEnabled:
		return nil
	case st != "" && !stateRE.MatchString(st):
		st = "UNKNOWN"
	}
	return &keychain.KeyStateError{State: st}
}

// Forget drops every cached answer (tests; an operator-triggered re-probe).
func (p *KeyProber) Forget() { p.seen.Clear() }

// InstanceConfig is the keystore instance configuration handed to a keystore plugin for an Account without
// backend access data: keychain.BaseInstanceConfig. Hosts with a key chain use keychain.Chain.InstanceConfig, which
// adds the access data the embedded keystore needs.
func InstanceConfig(a *cmkv1.Account) (*structpb.Struct, error) {
	return structpb.NewStruct(keychain.BaseInstanceConfig(a))
}

// bindingFields are the access-data fields whose refusal is a verdict about the Account itself: a keystore plugin
// that answers "failed to authenticate with the keystore provider" naming one of them (ErrorInfo metadata "field",
// see pkg/plugins/keystore/keystoreerr) refused the Account's role or key for its tenant, which no retry changes.
// Authentication failures naming anything else (the platform's own identity, a token file) stay outages.
var bindingFields = map[string]bool{"roleArn": true, "keyId": true, "tenant": true}

func bindingRefused(err error) bool {
	st := status.Convert(err)
	if st.Code() != kserrors.StatusProviderAuthenticationError.Code() || st.Message() != kserrors.StatusProviderAuthenticationError.Message() {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && bindingFields[info.GetMetadata()["field"]] {
			return true
		}
	}
	return false
}

// bindingDetail is the plugin's precise reason (it speaks about the writer's own Account, so it is not another
// tenant's data).
func bindingDetail(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetMetadata()["detail"] != "" {
			return info.GetMetadata()["field"] + ": " + info.GetMetadata()["detail"]
		}
	}
	return status.Convert(err).Message()
}
