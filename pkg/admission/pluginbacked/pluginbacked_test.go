package pluginbacked_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	sisv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/pluginbacked"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// --- fakes ---

// fakeSIS answers Get from a table of regions (nil metadata = known without audiences); err, when set, is returned
// for every call. It records the requests.
type fakeSIS struct {
	mu      sync.Mutex
	regions map[string]map[string]string
	err     error
	calls   []*sisv1.GetRequest
}

func (f *fakeSIS) Get(_ context.Context, in *sisv1.GetRequest, _ ...grpc.CallOption) (*sisv1.GetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, in)
	if f.err != nil {
		return nil, f.err
	}
	md, ok := f.regions[in.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no %s %q", in.GetType(), in.GetId())
	}
	return &sisv1.GetResponse{Metadata: md}, nil
}

func (f *fakeSIS) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeSIS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// fakeKeyOps answers GetKey with err (nil = the key exists, in state; "" = ENABLED) and records the requests.
type fakeKeyOps struct {
	mu    sync.Mutex
	err   error
	state string
	calls []*operationsv1.GetKeyRequest
}

func (f *fakeKeyOps) GetKey(_ context.Context, in *operationsv1.GetKeyRequest, _ ...grpc.CallOption) (*operationsv1.GetKeyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, in)
	if f.err != nil {
		return nil, f.err
	}
	st := f.state
	if st == "" {
		st = pluginbacked.StateEnabled
	}
	return &operationsv1.GetKeyResponse{KeyId: in.GetParameters().GetKeyId(), Status: st}, nil
}

func (f *fakeKeyOps) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func isPolicyError(err error, field string) bool {
	var pe *admission.PolicyError
	return errors.As(err, &pe) && pe.Field == field
}

// --- RegionPolicy ---

func TestRegionPolicy(t *testing.T) {
	ctx := context.Background()
	newPolicy := func() (*pluginbacked.RegionPolicy, *fakeSIS) {
		sis := &fakeSIS{regions: map[string]map[string]string{
			"eu-de":   {pluginbacked.AudiencesKey: " cmk-api , ops ,,"},
			"us-east": nil,
			"ap-none": {pluginbacked.AudiencesKey: ""},
		}}
		return &pluginbacked.RegionPolicy{SIS: sis, TTL: time.Hour}, sis
	}
	cases := []struct {
		name      string
		region    string
		audiences []string
		field     string // "" = allowed
		msg       string
	}{
		{"known region, allowed audiences (trimmed list)", "eu-de", []string{"cmk-api", "ops"}, "", ""},
		{"known region, audience not listed", "eu-de", []string{"cmk-api", "other"}, "spec.oidcProvider.audiences", `audience "other" is not allowed in region "eu-de"`},
		{"known region without audience list allows any", "us-east", []string{"anything"}, "", ""},
		{"known region with an empty audience list allows none", "ap-none", []string{"x"}, "spec.oidcProvider.audiences", `"x"`},
		{"known region, no audiences asked", "ap-none", nil, "", ""},
		{"unknown region", "mars-1", nil, "spec.region", `region "mars-1" is not a Platform Mesh region`},
		{"too short for SIS is unknown", "eu", nil, "spec.region", `"eu"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, sis := newPolicy()
			err := p.CheckRegion(ctx, tc.region, tc.audiences)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("CheckRegion = %v, want nil", err)
				}
			} else {
				if !isPolicyError(err, tc.field) {
					t.Fatalf("CheckRegion = %#v, want PolicyError on %s", err, tc.field)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("message %q does not contain %q", err, tc.msg)
				}
			}
			if len(tc.region) >= 3 {
				if sis.count() != 1 || sis.calls[0].GetId() != tc.region || sis.calls[0].GetType() != pluginbacked.RegionType {
					t.Errorf("SIS calls %v, want one Get{id: %q, type: region}", sis.calls, tc.region)
				}
			} else if sis.count() != 0 {
				t.Errorf("SIS asked about %q, which cannot exist there", tc.region)
			}
		})
	}
}

func TestRegionPolicyCache(t *testing.T) {
	ctx := context.Background()
	t.Run("answers are cached for the TTL", func(t *testing.T) {
		sis := &fakeSIS{regions: map[string]map[string]string{"eu-de": nil}}
		p := &pluginbacked.RegionPolicy{SIS: sis, TTL: time.Hour}
		for range 3 {
			if err := p.CheckRegion(ctx, "eu-de", nil); err != nil {
				t.Fatal(err)
			}
			if err := p.CheckRegion(ctx, "mars-1", nil); !isPolicyError(err, "spec.region") {
				t.Fatalf("unknown region: %v", err)
			}
		}
		if n := sis.count(); n != 2 {
			t.Fatalf("SIS called %d times, want 2 (one known, one not-found answer, both cached)", n)
		}
	})
	t.Run("expired answers are asked again", func(t *testing.T) {
		sis := &fakeSIS{regions: map[string]map[string]string{"eu-de": nil}}
		p := &pluginbacked.RegionPolicy{SIS: sis, TTL: 10 * time.Millisecond}
		_ = p.CheckRegion(ctx, "eu-de", nil)
		time.Sleep(20 * time.Millisecond)
		_ = p.CheckRegion(ctx, "eu-de", nil)
		if n := sis.count(); n != 2 {
			t.Fatalf("SIS called %d times, want 2", n)
		}
	})
	t.Run("outage with a stale answer uses it", func(t *testing.T) {
		sis := &fakeSIS{regions: map[string]map[string]string{"eu-de": {pluginbacked.AudiencesKey: "cmk-api"}}}
		p := &pluginbacked.RegionPolicy{SIS: sis, TTL: 10 * time.Millisecond}
		if err := p.CheckRegion(ctx, "eu-de", []string{"cmk-api"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		sis.setErr(status.Error(codes.Unavailable, "sis down"))
		if err := p.CheckRegion(ctx, "eu-de", []string{"cmk-api"}); err != nil {
			t.Fatalf("stale answer not used: %v", err)
		}
		if err := p.CheckRegion(ctx, "eu-de", []string{"other"}); !isPolicyError(err, "spec.oidcProvider.audiences") {
			t.Fatalf("stale audience list not applied: %v", err)
		}
		if sis.count() < 2 {
			t.Fatalf("SIS was not asked again after the TTL")
		}
	})
	t.Run("outage without an answer is an error, not a verdict", func(t *testing.T) {
		sis := &fakeSIS{err: status.Error(codes.Unavailable, "sis down")}
		p := &pluginbacked.RegionPolicy{SIS: sis}
		err := p.CheckRegion(ctx, "eu-de", nil)
		var pe *admission.PolicyError
		if err == nil || errors.As(err, &pe) {
			t.Fatalf("CheckRegion = %#v, want a plain error", err)
		}
		if !strings.Contains(err.Error(), `region "eu-de"`) || status.Code(errors.Unwrap(err)) != codes.Unavailable {
			t.Errorf("error %q should name the region and wrap the gRPC status", err)
		}
		// The failure is not cached: the next call asks again and succeeds.
		sis.setErr(nil)
		sis.regions = map[string]map[string]string{"eu-de": nil}
		if err := p.CheckRegion(ctx, "eu-de", nil); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	})
}

func TestRegionPolicyConcurrent(t *testing.T) {
	sis := &fakeSIS{regions: map[string]map[string]string{"eu-de": nil}}
	p := &pluginbacked.RegionPolicy{SIS: sis, TTL: time.Millisecond}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				_ = p.CheckRegion(context.Background(), []string{"eu-de", "mars-1"}[i%2], nil)
			}
		}()
	}
	wg.Wait()
}

// --- KeyProber ---

func acct(ns, keyRef string) *cmkv1.Account {
	a := &cmkv1.Account{Spec: cmkv1.AccountSpec{Keystore: cmkv1.KeystoreAWS, KeyRef: keyRef, Region: "eu-central-1"}}
	a.Namespace, a.Name = ns, "main"
	return a
}

func proberFor(ops *fakeKeyOps, ttl time.Duration) *pluginbacked.KeyProber {
	return &pluginbacked.KeyProber{
		Client: func(ks cmkv1.KeystoreType) (pluginbacked.KeyOpsClient, error) {
			if ks != cmkv1.KeystoreAWS {
				return nil, errors.New("not loaded")
			}
			return ops, nil
		},
		InstanceConfig: pluginbacked.InstanceConfig,
		TTL:            ttl,
	}
}

func TestKeyProber(t *testing.T) {
	ctx := context.Background()
	t.Run("key exists", func(t *testing.T) {
		ops := &fakeKeyOps{}
		a := acct("acme-eu", "arn:aws:kms:eu-central-1:1:key/abc")
		a.Spec.Auth = &cmkv1.AccountAuth{IRSARoleARN: "arn:aws:iam::1:role/cmk"}
		if err := proberFor(ops, 0).ProbeKey(ctx, a); err != nil {
			t.Fatal(err)
		}
		req := ops.calls[0].GetParameters()
		vals := req.GetConfig().GetValues().AsMap()
		if req.GetKeyId() != a.Spec.KeyRef || vals["region"] != "eu-central-1" || vals["namespace"] != "acme-eu" || vals["roleArn"] != "arn:aws:iam::1:role/cmk" {
			t.Errorf("GetKey request %v does not carry the Account's key and instance configuration", req)
		}
	})
	t.Run("NotFound wraps ErrKeyNotFound", func(t *testing.T) {
		ops := &fakeKeyOps{err: status.Error(codes.NotFound, "key not found in the keystore provider")}
		err := proberFor(ops, 0).ProbeKey(ctx, acct("acme-eu", "k"))
		if !errors.Is(err, admission.ErrKeyNotFound) || !strings.Contains(err.Error(), "key not found") {
			t.Fatalf("ProbeKey = %v, want ErrKeyNotFound", err)
		}
	})
	t.Run("a refused tenant binding wraps ErrTenantBinding", func(t *testing.T) {
		st, err := kserrors.StatusProviderAuthenticationError.WithDetails(&errdetails.ErrorInfo{Reason: "KEYSTORE_AWS",
			Metadata: map[string]string{"field": "roleArn", "detail": "role x is not a role of tenant acme-eu"}})
		if err != nil {
			t.Fatal(err)
		}
		got := proberFor(&fakeKeyOps{err: st.Err()}, 0).ProbeKey(ctx, acct("acme-eu", "k"))
		if !errors.Is(got, keychain.ErrTenantBinding) || !strings.Contains(got.Error(), "not a role of tenant acme-eu") {
			t.Fatalf("ProbeKey = %v, want ErrTenantBinding with the plugin's reason", got)
		}
		// The same status naming the platform's own identity is an outage, not a verdict about the Account.
		st, _ = kserrors.StatusProviderAuthenticationError.WithDetails(&errdetails.ErrorInfo{Metadata: map[string]string{"field": "webIdentityToken"}})
		if got := proberFor(&fakeKeyOps{err: st.Err()}, 0).ProbeKey(ctx, acct("acme-eu", "k")); errors.Is(got, keychain.ErrDenied) {
			t.Fatalf("ProbeKey = %v: a platform credential failure must not deny the Account", got)
		}
	})
	t.Run("other failures are plain errors", func(t *testing.T) {
		for _, c := range []codes.Code{codes.Unavailable, codes.PermissionDenied, codes.InvalidArgument, codes.DeadlineExceeded} {
			ops := &fakeKeyOps{err: status.Error(c, "no luck")}
			err := proberFor(ops, 0).ProbeKey(ctx, acct("acme-eu", "k"))
			if err == nil || errors.Is(err, admission.ErrKeyNotFound) || !strings.Contains(err.Error(), "no luck") {
				t.Errorf("%s: ProbeKey = %v, want a plain error with the status message", c, err)
			}
		}
	})
	t.Run("no plugin for the keystore", func(t *testing.T) {
		a := acct("acme-eu", "k")
		a.Spec.Keystore = cmkv1.KeystoreThales
		err := proberFor(&fakeKeyOps{}, 0).ProbeKey(ctx, a)
		if !errors.Is(err, pluginbacked.ErrNoPlugin) || errors.Is(err, admission.ErrKeyNotFound) {
			t.Fatalf("ProbeKey = %v, want ErrNoPlugin", err)
		}
	})
	t.Run("instance configuration error", func(t *testing.T) {
		p := proberFor(&fakeKeyOps{}, 0)
		p.InstanceConfig = func(*cmkv1.Account) (*structpb.Struct, error) { return nil, errors.New("bad ref") }
		if err := p.ProbeKey(ctx, acct("acme-eu", "k")); err == nil || !strings.Contains(err.Error(), "bad ref") {
			t.Fatalf("ProbeKey = %v", err)
		}
	})
	t.Run("success is cached for the TTL, failures are not", func(t *testing.T) {
		ops := &fakeKeyOps{}
		p := proberFor(ops, 30*time.Millisecond)
		for range 3 {
			if err := p.ProbeKey(ctx, acct("acme-eu", "k")); err != nil {
				t.Fatal(err)
			}
		}
		if n := ops.count(); n != 1 {
			t.Fatalf("GetKey called %d times within the TTL, want 1", n)
		}
		time.Sleep(40 * time.Millisecond)
		_ = p.ProbeKey(ctx, acct("acme-eu", "k"))
		if n := ops.count(); n != 2 {
			t.Fatalf("GetKey called %d times after the TTL, want 2", n)
		}
		ops.err = status.Error(codes.NotFound, "gone")
		_ = p.ProbeKey(ctx, acct("acme-eu", "other"))
		_ = p.ProbeKey(ctx, acct("acme-eu", "other"))
		if n := ops.count(); n != 4 {
			t.Fatalf("GetKey called %d times, want 4: not-found answers are not cached", n)
		}
	})
	t.Run("a cached success is not reused for other credentials", func(t *testing.T) {
		ops := &fakeKeyOps{}
		p := proberFor(ops, time.Hour)
		a := acct("acme-eu", "shared-key")
		a.Spec.Auth = &cmkv1.AccountAuth{IRSARoleARN: "arn:aws:iam::1:role/acme"}
		b := acct("globex", "shared-key")
		b.Spec.Auth = &cmkv1.AccountAuth{IRSARoleARN: "arn:aws:iam::2:role/globex"}
		if err := p.ProbeKey(ctx, a); err != nil {
			t.Fatal(err)
		}
		ops.err = status.Error(codes.NotFound, "not visible with this role")
		if err := p.ProbeKey(ctx, b); !errors.Is(err, admission.ErrKeyNotFound) {
			t.Fatalf("ProbeKey(globex) = %v: the answer cached for acme's role was reused for globex's", err)
		}
	})
	t.Run("honours the caller's deadline", func(t *testing.T) {
		p := &pluginbacked.KeyProber{Client: func(cmkv1.KeystoreType) (pluginbacked.KeyOpsClient, error) { return blockingOps{}, nil }}
		ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := p.ProbeKey(ctx, acct("acme-eu", "k"))
		if err == nil || errors.Is(err, admission.ErrKeyNotFound) || time.Since(start) > 5*time.Second {
			t.Fatalf("ProbeKey = %v after %s", err, time.Since(start))
		}
	})
}

type blockingOps struct{}

func (blockingOps) GetKey(ctx context.Context, _ *operationsv1.GetKeyRequest, _ ...grpc.CallOption) (*operationsv1.GetKeyResponse, error) {
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}
