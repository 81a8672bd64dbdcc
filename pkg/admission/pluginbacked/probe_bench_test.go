package pluginbacked_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	"google.golang.org/grpc"

	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/pkg/admission/pluginbacked"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/keychain/localwrap"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/local"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

// localProber probes a real local keystore key through the plugin-sdk catalog (builtin), with the access data the
// key chain derives for the Account's tenant — the production path of an Account on keystore local.
func localProber(b *testing.B, ttl time.Duration) (*pluginbacked.KeyProber, *cmkv1.Account) {
	b.Helper()
	yaml := "dir: " + b.TempDir() + "\n"
	set := plugintest.LoadSet(b, plugintest.ModeBuiltin, plugintest.Spec{Type: host.TypeKeyOperations, Name: "LOCAL", YAML: yaml,
		BuiltIn: func() catalog.BuiltInPlugin { return local.NewOperationsBuiltIn("LOCAL") }})
	ops, err := set[0].Plugins.KeyOperations("LOCAL")
	if err != nil {
		b.Fatal(err)
	}
	w, err := localwrap.New(context.Background(), yaml)
	if err != nil {
		b.Fatal(err)
	}
	chain := keychain.NewChain(nil)
	chain.Register(cmkv1.KeystoreLocal, w)
	chain.SetProvisioning(cmkv1.KeystoreLocal, true)
	a := acct("acme", "acme-l1")
	a.Spec.Keystore = cmkv1.KeystoreLocal
	a.Labels = map[string]string{cmkv1.TenantLabel: "acme"}
	if _, err := chain.EnsureL1Key(context.Background(), a); err != nil {
		b.Fatal(err)
	}
	return &pluginbacked.KeyProber{
		Client:         func(cmkv1.KeystoreType) (pluginbacked.KeyOpsClient, error) { return ops, nil },
		InstanceConfig: chain.InstanceConfig,
		TTL:            ttl,
	}, a
}

// BenchmarkProbeLocal: one probe of an existing local keystore key, without the cache (every probe is a GetKey
// through the catalog that reads the key record from disk) and with it (warm positive answer).
func BenchmarkProbeLocal(b *testing.B) {
	for _, tc := range []struct {
		name string
		ttl  time.Duration
	}{{"uncached", time.Nanosecond}, {"cached", time.Hour}} {
		b.Run(tc.name, func(b *testing.B) {
			p, a := localProber(b, tc.ttl)
			ctx := context.Background()
			if err := p.ProbeKey(ctx, a); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if err := p.ProbeKey(ctx, a); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(p.BackendCalls())/float64(b.N), "backend-calls/op")
		})
	}
}

// slowOps answers GetKey after a fixed latency (a remote keystore such as KMS).
type slowOps struct{ latency time.Duration }

func (s slowOps) GetKey(ctx context.Context, _ *operationsv1.GetKeyRequest, _ ...grpc.CallOption) (*operationsv1.GetKeyResponse, error) {
	select {
	case <-time.After(s.latency):
		return &operationsv1.GetKeyResponse{Status: pluginbacked.StateEnabled}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// BenchmarkColdKeyFanIn: 1,000 concurrent admissions probe one cold key (fresh prober each op) behind a keystore
// with 20 ms latency. Reports the wall time of the whole fan-in and the backend calls it made.
func BenchmarkColdKeyFanIn(b *testing.B) {
	const n = 1000
	var calls int64
	for b.Loop() {
		p := &pluginbacked.KeyProber{
			Client: func(cmkv1.KeystoreType) (pluginbacked.KeyOpsClient, error) {
				return slowOps{20 * time.Millisecond}, nil
			},
			InstanceConfig: pluginbacked.InstanceConfig,
		}
		var wg sync.WaitGroup
		wg.Add(n)
		for range n {
			go func() {
				defer wg.Done()
				if err := p.ProbeKey(context.Background(), acct("acme", "k")); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		calls += p.BackendCalls()
	}
	b.ReportMetric(float64(calls)/float64(b.N), "backend-calls/op")
}
