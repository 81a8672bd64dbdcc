// Package kcp_test proves the Platform Mesh path against a real kcp server: a workspace tree becomes the tenant
// hierarchy, the mesh configuration in the platform workspace decides regions and audiences (live, keeping the last
// good one), and every verdict is shown through the SystemInformationService plugin and through admission with the
// webhook registered in kcp.
package kcp_test

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	sisv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/admissiontest"
	"github.com/apeirora/apeiro-cmk/pkg/admission/pluginbacked"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpserver"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcptest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/sis/resourcegraph"
)

var (
	tenantsGVR        = cmkv1.GroupVersion.WithResource("tenants")
	openKCMTenantsGVR = schema.GroupVersionResource{Group: admission.OpenKCMGroup, Version: "v1alpha1", Resource: "tenants"}
	eventsGVR         = schema.GroupVersionResource{Version: "v1", Resource: "events"}
)

func TestPlatformMeshOnKCP(t *testing.T) {
	s := kcptest.Start(t)
	// First, alone on the shard (before the fixture and the in-process controllers): the real binary under
	// deploy/kcp's permissions.
	t.Run("binary", func(t *testing.T) { checkWebhookBinary(t, s) }) // test/kcp/binary_test.go
	w := kcptest.NewWorld(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	// The webhook's view: graph + model, fed by the multi-cluster watch.
	model := hierarchy.New(hierarchy.Config{})
	graph := kcp.NewGraph(kcp.Options{}, model)
	// The key chain and the controllers, fed by the same watch (as in the webhook's kcp mode).
	ctrls, chain := keyChain(t, s, graph, model)
	watcher := kcp.NewWatcher(s.Shard, graph, kcp.WatcherOptions{ReportErrors: true, ConfirmInterval: time.Second, Log: testr.New(t),
		OnAccount: ctrls.OnAccount, OnKey: ctrls.OnKey})
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	if err := watcher.Start(wctx); err != nil {
		t.Fatal(err)
	}
	ctrlsDone := make(chan struct{})
	go func() { defer close(ctrlsDone); _ = ctrls.Start(wctx) }()
	defer func() { wcancel(); <-ctrlsDone }()
	sctx, scancel := context.WithTimeout(ctx, 2*time.Minute)
	defer scancel()
	if err := watcher.WaitForSync(sctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the workspace tree and the mesh configuration in the model", func() error {
		for id, want := range map[string]hierarchy.Tenant{
			"acme":    {ID: "acme", Type: hierarchy.Root},
			"acme.eu": {ID: "acme.eu", Type: hierarchy.Nested, Parent: "acme"},
			"acme-dr": {ID: "acme-dr", Type: hierarchy.Shadow, ShadowOf: "acme"},
			"globex":  {ID: "globex", Type: hierarchy.Root},
		} {
			if got, ok := model.Tenant(id); !ok || got != want {
				return errors.New("tenant " + id + " not yet as expected")
			}
		}
		if _, ok := model.Tenant("platform"); ok {
			return errors.New("the platform workspace became a tenant")
		}
		if cfg, _ := graph.Mesh(); cfg == nil {
			return errors.New("no mesh configuration yet")
		}
		_, _, accounts := graph.Counts()
		if accounts < 2 {
			return errors.New("accounts not seen yet")
		}
		return nil
	})

	// --- through the SystemInformationService plugin, configured with kcp's kubeconfig ---
	plugin := resourcegraph.New()
	if _, err := plugin.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: "kubeconfig: " + s.Kubeconfig + "\ncontext: " + kcpserver.AdminContext}); err != nil {
		t.Fatal(err)
	}
	defer plugin.Close()
	t.Run("plugin", func(t *testing.T) {
		get := func(typ, id string) (map[string]string, error) {
			r, err := plugin.Get(ctx, &sisv1.GetRequest{Type: typ, Id: id})
			return r.GetMetadata(), err
		}
		md, err := get("tenant", "acme.eu")
		if err != nil || md["tenantType"] != "Nested" || md["parent"] != "acme" || md["workspace"] != w.AcmeEU {
			t.Fatalf("tenant acme.eu: %v %v", md, err)
		}
		if md, err = get("tenant", "acme-dr"); err != nil || md["tenantType"] != "Shadow" || md["shadowOf"] != "acme" {
			t.Fatalf("tenant acme-dr: %v %v", md, err)
		}
		if md, err = get("workspace", w.Platform); err != nil || md["tenant"] != "" || md["cluster"] == "" {
			t.Fatalf("workspace %s: %v %v", w.Platform, md, err)
		}
		if md, err = get("account", w.Acme+"/keys/main"); err != nil || md["tenant"] != "acme" || md["name"] != "main" {
			t.Fatalf("account: %v %v", md, err)
		}
		if md, err = get("region", "eu-central"); err != nil || md["audiences"] != "cmk,apeiro-webhook" {
			t.Fatalf("region: %v %v", md, err)
		}
		for _, missing := range [][2]string{{"tenant", "nobody"}, {"region", "mars-1"}, {"account", w.Globex + "/keys/other"}} {
			if _, err := get(missing[0], missing[1]); status.Code(err) != codes.NotFound {
				t.Fatalf("Get(%s/%s) = %v, want NotFound", missing[0], missing[1], err)
			}
		}
		// The mock Tenant CR verdicts as the webhook's plugin-backed region policy sees them.
		pol := &pluginbacked.RegionPolicy{SIS: serverClient{plugin}}
		if err := pol.CheckRegion(ctx, "eu-central", []string{"cmk"}); err != nil {
			t.Fatalf("valid mock tenant through the plugin: %v", err)
		}
		var pe *admission.PolicyError
		if err := pol.CheckRegion(ctx, "mars-1", nil); !errors.As(err, &pe) {
			t.Fatalf("invalid region through the plugin: %v, want a policy denial", err)
		}
		if err := pol.CheckRegion(ctx, "eu-central", []string{"evil"}); !errors.As(err, &pe) {
			t.Fatalf("invalid audience through the plugin: %v, want a policy denial", err)
		}
	})

	// --- through admission: the webhook handlers served over TLS and registered in every tenant workspace ---
	// As in the webhook's kcp mode: live point reads on a miss and for the liveness checks.
	live, err := kcp.NewLiveReader(s.Shard, graph.Options())
	if err != nil {
		t.Fatal(err)
	}
	h := admission.NewHandlers(admission.Handlers{
		Dir:         &admission.Directory{Model: model, Source: graph, Live: admission.NewBatchedReader(live)},
		Regions:     kcp.MeshPolicy{Graph: graph},
		Permissions: admission.RBACDelegated{},
	})
	ts := httptest.NewUnstartedServer(admissiontest.Mux(h, admission.Limits{}))
	ts.StartTLS()
	defer ts.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	registerWebhooks(t, ctx, s, w, ts.URL, caPEM)

	t.Run("mock-tenant-CR", func(t *testing.T) {
		if _, err := createTenant(ctx, s, w.Acme, "mock-valid", "eu-central", []string{"cmk"}, false); err != nil {
			t.Fatalf("valid mock Tenant: %v", err)
		}
		_, err := createTenant(ctx, s, w.Acme, "mock-bad-region", "mars-1", nil, true)
		if !kcpserver.IsDenied(err, `region "mars-1" is not a Platform Mesh region (allowed: eu-central, us-east)`) {
			t.Fatalf("invalid region: %v", err)
		}
		_, err = createTenant(ctx, s, w.Acme, "mock-bad-aud", "eu-central", []string{"evil"}, true)
		if !kcpserver.IsDenied(err, `audience "evil" is not allowed in region "eu-central" (allowed: cmk, apeiro-webhook)`) {
			t.Fatalf("invalid audience: %v", err)
		}
		// The upstream OpenKCM Tenant gets the same policy.
		up := func(name, region string) error {
			_, err := kcpserver.Create(ctx, s.Base, w.Acme, openKCMTenantsGVR, &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": admission.OpenKCMGroup + "/v1alpha1", "kind": "Tenant",
				"metadata": map[string]any{"name": name, "namespace": "keys"}, "spec": map[string]any{"region": region}}},
				metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}
		if err := up("upstream-ok", "us-east"); err != nil {
			t.Fatalf("valid upstream Tenant: %v", err)
		}
		if err := up("upstream-bad", "mars-1"); !kcpserver.IsDenied(err, "allowed: eu-central, us-east") {
			t.Fatalf("invalid upstream Tenant: %v", err)
		}
	})

	t.Run("keys-across-workspaces", func(t *testing.T) {
		for _, tc := range []struct {
			name, in, accountWS string
			deny                string // "" = admitted
		}{
			{"own-tree-ancestor", w.AcmeEU, w.Acme, ""},
			{"own-workspace", w.Globex, "", ""},
			{"shadow-of-owner", w.AcmeDR, w.Acme, ""},
			{"other-tree", w.AcmeEU, w.Globex, `not usable by tenant "acme.eu"`},
			{"other-root", w.Globex, w.Acme, `not usable by tenant "globex"`},
			{"no-such-workspace", w.Acme, "root:nowhere", "spec.accountRef"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := createKey(ctx, s, tc.in, "k-"+tc.name, tc.accountWS)
				if tc.deny == "" && err != nil {
					t.Fatalf("key in %s using %s's account: %v", tc.in, tc.accountWS, err)
				}
				if tc.deny != "" && !kcpserver.IsDenied(err, tc.deny) {
					t.Fatalf("key in %s using %s's account: %v, want a denial mentioning %q", tc.in, tc.accountWS, err, tc.deny)
				}
			})
		}
	})

	t.Run("key-chain", func(t *testing.T) { checkKeyChain(t, ctx, s, w, chain) })
	t.Run("alerts", func(t *testing.T) { checkAlertsOnKCP(t, ctx, s, w, graph, chain) }) // test/kcp/alerts_test.go

	t.Run("in-use", func(t *testing.T) { checkInUseOnKCP(t, ctx, s, w) }) // test/kcp/inuse_test.go

	t.Run("mesh-config-live", func(t *testing.T) {
		if err := kcpserver.PutMeshConfig(ctx, s.Base, w.Platform, "default", "platform-mesh", kcptest.MeshConfig+"  - name: ap-south\n"); err != nil {
			t.Fatal(err)
		}
		eventually(t, "ap-south admitted without a restart", func() error {
			_, err := createTenant(ctx, s, w.Acme, "mock-ap", "ap-south", nil, true)
			return err
		})
		// A malformed revision is reported on the ConfigMap and the previous configuration stays in force.
		if err := kcpserver.PutMeshConfig(ctx, s.Base, w.Platform, "default", "platform-mesh", "regions: [{name: Not_A_Region}]"); err != nil {
			t.Fatal(err)
		}
		eventually(t, "a Warning event on the mesh ConfigMap", func() error {
			dc, err := kcpserver.Client(s.Base, w.Platform)
			if err != nil {
				return err
			}
			l, err := dc.Resource(eventsGVR).Namespace("default").List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, e := range l.Items {
				reason, _, _ := unstructured.NestedString(e.Object, "reason")
				msg, _, _ := unstructured.NestedString(e.Object, "message")
				if reason == kcp.ReasonInvalidMeshConfig && strings.Contains(msg, "not a DNS label") {
					return nil
				}
			}
			return errors.New("no event yet")
		})
		if _, err := createTenant(ctx, s, w.Acme, "mock-ap2", "ap-south", nil, true); err != nil {
			t.Fatalf("after a malformed revision the previous configuration must stay in force: %v", err)
		}
	})

	t.Run("watch-resume", func(t *testing.T) { checkWatchResume(t, ctx, s, model) })

	t.Run("workspace-deleted", func(t *testing.T) {
		dc, err := kcpserver.Client(s.Base, "root")
		if err != nil {
			t.Fatal(err)
		}
		if err := dc.Resource(kcp.WorkspacesGVR).Delete(ctx, "globex", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "tenant globex gone from the model", func() error {
			if _, ok := model.Tenant("globex"); ok {
				return errors.New("still there")
			}
			return nil
		})
		if _, err := plugin.Get(ctx, &sisv1.GetRequest{Type: "tenant", Id: "globex"}); status.Code(err) != codes.NotFound {
			eventually(t, "tenant globex gone from the plugin", func() error {
				_, err := plugin.Get(ctx, &sisv1.GetRequest{Type: "tenant", Id: "globex"})
				if status.Code(err) != codes.NotFound {
					return errors.New("still found")
				}
				return nil
			})
		}
	})

	t.Run("kcp-unreachable", func(t *testing.T) {
		if err := s.Kill(); err != nil {
			t.Logf("stopping kcp: %v", err)
		}
		time.Sleep(2500 * time.Millisecond)
		cfg, age := graph.Mesh()
		if cfg == nil || age < 2*time.Second {
			t.Fatalf("mesh configuration %v, age %s: want the last known one, aging", cfg, age)
		}
		start := time.Now()
		err := kcp.MeshPolicy{Graph: graph}.CheckRegion(ctx, "ap-south", nil)
		if err != nil || time.Since(start) > 100*time.Millisecond {
			t.Fatalf("policy with kcp down: %v after %s", err, time.Since(start))
		}
		t.Logf("kcp down: the last known configuration (%v) applies, age %s", cfg.RegionNames(), age.Round(time.Millisecond))
	})
}

// serverClient calls the plugin's server methods directly, as the builtin catalog would.
type serverClient struct{ p *resourcegraph.Plugin }

func (c serverClient) Get(ctx context.Context, in *sisv1.GetRequest, _ ...grpc.CallOption) (*sisv1.GetResponse, error) {
	return c.p.Get(ctx, in)
}

func createTenant(ctx context.Context, s *kcpserver.Server, ws, name, region string, aud []string, dryRun bool) (*unstructured.Unstructured, error) {
	t := &cmkv1.Tenant{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmkv1.GroupVersion.String(), Kind: "Tenant"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       cmkv1.TenantSpec{Type: cmkv1.TenantType(hierarchy.Root), Region: region},
	}
	if aud != nil {
		t.Spec.OIDCProvider = &cmkv1.OIDCProvider{Issuer: "https://idp.example.com", JWKSURI: "https://idp.example.com/jwks", Audiences: aud}
	}
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return kcpserver.Create(ctx, s.Base, ws, tenantsGVR, t, opts)
}

func createKey(ctx context.Context, s *kcpserver.Server, ws, name, accountWS string) (*unstructured.Unstructured, error) {
	k := &cmkv1.ServiceEncryptionKey{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmkv1.GroupVersion.String(), Kind: "ServiceEncryptionKey"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "keys", Name: name},
		Spec:       cmkv1.ServiceEncryptionKeySpec{AccountRef: cmkv1.AccountReference{Name: "main"}, Algorithm: cmkv1.AlgorithmAES256},
	}
	if accountWS != "" {
		k.Annotations = map[string]string{kcp.AnnotationAccountWorkspace: accountWS}
	}
	return kcpserver.Create(ctx, s.Base, ws, kcp.KeysGVR, k, metav1.CreateOptions{})
}

// registerWebhooks installs the upstream Tenant CRD stand-in and registers the webhook in every tenant workspace,
// then waits until the webhook answers there.
func registerWebhooks(t *testing.T, ctx context.Context, s *kcpserver.Server, w *kcptest.World, url string, caPEM []byte) {
	t.Helper()
	crd := filepath.Join(w.Root, "test", "kcp", "testdata", "openkcm-tenant-crd.yaml")
	for _, ws := range w.Tenants() {
		if err := kcpserver.ApplyCRDs(ctx, s.Base, ws, crd); err != nil {
			t.Fatal(err)
		}
	}
	if err := kcpserver.RegisterWebhooks(ctx, s.Base, w.Root, url, caPEM, w.Tenants()...); err != nil {
		t.Fatal(err)
	}
	for _, ws := range w.Tenants() {
		eventually(t, "the webhook answering in "+ws, func() error {
			_, err := createTenant(ctx, s, ws, "probe", "mars-1", nil, true)
			if kcpserver.IsDenied(err, "not a Platform Mesh region") {
				return nil
			}
			return errors.New("not yet denied by the webhook: " + errString(err))
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "admitted"
	}
	return err.Error()
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
		last = f()
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, last)
	}
}
