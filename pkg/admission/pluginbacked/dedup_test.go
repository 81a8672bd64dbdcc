package pluginbacked_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/pkg/admission/pluginbacked"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// gatedOps answers GetKey only when release is closed, counting calls.
type gatedOps struct {
	release chan struct{}
	err     error
	calls   atomic.Int64
}

func (g *gatedOps) GetKey(ctx context.Context, _ *operationsv1.GetKeyRequest, _ ...grpc.CallOption) (*operationsv1.GetKeyResponse, error) {
	g.calls.Add(1)
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if g.err != nil {
		return nil, g.err
	}
	return &operationsv1.GetKeyResponse{Status: pluginbacked.StateEnabled}, nil
}

func gatedProber(ops *gatedOps) *pluginbacked.KeyProber {
	return &pluginbacked.KeyProber{
		Client:         func(cmkv1.KeystoreType) (pluginbacked.KeyOpsClient, error) { return ops, nil },
		InstanceConfig: pluginbacked.InstanceConfig,
		TTL:            time.Hour,
	}
}

// TestKeyProberColdKeyFanIn: 1,000 concurrent probes of one cold key make one backend call, and all get its answer.
// The backend answers only once every probe has started (counted in InstanceConfig, right before the shared call).
func TestKeyProberColdKeyFanIn(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		wantErr  error
		maxCalls int64
	}{
		{"key answers", nil, nil, 1},
		// Not-found answers are not cached: a probe that was scheduled so late that the shared call had already
		// returned asks again. With every probe started before the answer that is rare; allow a straggler or two.
		{"key missing", status.Error(codes.NotFound, "key not found in the keystore provider"), keychain.ErrKeyNotFound, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 1000
			ops := &gatedOps{release: make(chan struct{}), err: tc.err}
			p := gatedProber(ops)
			var entered atomic.Int64
			p.InstanceConfig = func(a *cmkv1.Account) (*structpb.Struct, error) {
				entered.Add(1)
				return pluginbacked.InstanceConfig(a)
			}
			errs := make(chan error, n)
			for range n {
				go func() { errs <- p.ProbeKey(context.Background(), acct("acme-eu", "k")) }()
			}
			deadline := time.Now().Add(30 * time.Second)
			for entered.Load() < n && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond) // from InstanceConfig to the shared call is a hash away
			close(ops.release)
			for range n {
				if err := <-errs; !errors.Is(err, tc.wantErr) && !(tc.wantErr == nil && err == nil) {
					t.Fatalf("ProbeKey = %v, want %v", err, tc.wantErr)
				}
			}
			if got := ops.calls.Load(); got < 1 || got > tc.maxCalls {
				t.Fatalf("%d backend calls for %d concurrent probes, want 1..%d", got, n, tc.maxCalls)
			}
		})
	}
}

// TestKeyProberWaiterLeavesAtItsDeadline: a caller whose budget runs out returns at its deadline; the shared call
// goes on for the others and its answer is cached.
func TestKeyProberWaiterLeavesAtItsDeadline(t *testing.T) {
	ops := &gatedOps{release: make(chan struct{})}
	p := gatedProber(ops)
	short, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.ProbeKey(short, acct("acme-eu", "k")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ProbeKey = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the short caller waited %s", d)
	}
	done := make(chan error, 1)
	go func() { done <- p.ProbeKey(context.Background(), acct("acme-eu", "k")) }()
	time.Sleep(20 * time.Millisecond)
	close(ops.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := p.ProbeKey(context.Background(), acct("acme-eu", "k")); err != nil || ops.calls.Load() != 1 {
		t.Fatalf("cached probe = %v after %d calls, want one call in all", err, ops.calls.Load())
	}
}

// TestKeyProberDryRunCachesNothing: a dry-run probe gets the real answer but leaves no cache entry.
func TestKeyProberDryRunCachesNothing(t *testing.T) {
	ops := &gatedOps{release: make(chan struct{})}
	close(ops.release)
	p := gatedProber(ops)
	dry := keychain.WithDryRun(context.Background())
	for range 2 {
		if err := p.ProbeKey(dry, acct("acme-eu", "k")); err != nil {
			t.Fatal(err)
		}
	}
	if got := ops.calls.Load(); got != 2 {
		t.Fatalf("%d backend calls for two sequential dry-run probes, want 2 (nothing cached)", got)
	}
	_ = p.ProbeKey(context.Background(), acct("acme-eu", "k"))
	_ = p.ProbeKey(context.Background(), acct("acme-eu", "k"))
	if got := ops.calls.Load(); got != 3 {
		t.Fatalf("%d backend calls, want 3 (the real probe is cached)", got)
	}
}
