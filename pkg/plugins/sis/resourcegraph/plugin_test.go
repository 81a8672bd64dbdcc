package resourcegraph_test

import (
	"context"
	"strings"
	"testing"

	sisv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/apeirora/apeiro-cmk/pkg/kcp"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/sis/resourcegraph"
)

// fedGraph is the graph a watch of this tree would build; the kcp-backed contract suite checks the same answers
// against a real kcp.
func fedGraph(t *testing.T) *kcp.Graph {
	g := kcp.NewGraph(kcp.Options{}, nil)
	g.UpsertLogicalCluster("lc-acme", "root:acme")
	g.UpsertWorkspace("lc-acme", "", "Ready")
	g.UpsertLogicalCluster("lc-eu", "root:acme:eu")
	g.UpsertWorkspace("lc-eu", "", "Ready")
	g.UpsertLogicalCluster("lc-platform", "root:platform")
	g.UpsertAccount(kcp.Account{Cluster: "lc-acme", Namespace: "keys", Name: "main"})
	cfg, err := kcp.ParseMeshConfig("regions: [{name: eu-central, audiences: [cmk, apeiro-webhook]}, {name: us-east}]")
	if err != nil {
		t.Fatal(err)
	}
	g.SetMesh(cfg)
	return g
}

func TestGet(t *testing.T) {
	p := resourcegraph.NewFromGraph(fedGraph(t))
	for _, tc := range []struct {
		typ, id string
		want    map[string]string
		absent  []string
	}{
		{"region", "eu-central", map[string]string{"region": "eu-central", "audiences": "cmk,apeiro-webhook", "configAgeSeconds": "0"}, nil},
		{"region", "us-east", map[string]string{"region": "us-east"}, []string{"audiences"}},
		{"tenant", "acme", map[string]string{"tenant": "acme", "tenantType": "Root", "workspace": "root:acme", "cluster": "lc-acme"}, []string{"parent"}},
		{"tenant", "acme.eu", map[string]string{"tenant": "acme.eu", "tenantType": "Nested", "parent": "acme", "workspace": "root:acme:eu"}, nil},
		{"workspace", "root:acme:eu", map[string]string{"workspace": "root:acme:eu", "cluster": "lc-eu", "phase": "Ready", "parent": "root:acme", "tenant": "acme.eu"}, nil},
		{"workspace", "root:platform", map[string]string{"workspace": "root:platform", "cluster": "lc-platform"}, []string{"tenant"}},
		{"account", "root:acme/keys/main", map[string]string{"tenant": "acme", "workspace": "root:acme", "namespace": "keys", "name": "main"}, nil},
	} {
		resp, err := p.Get(context.Background(), &sisv1.GetRequest{Type: tc.typ, Id: tc.id})
		if err != nil {
			t.Fatalf("Get(%s/%s): %v", tc.typ, tc.id, err)
		}
		for k, v := range tc.want {
			if got := resp.GetMetadata()[k]; got != v {
				t.Errorf("Get(%s/%s)[%s] = %q, want %q (all: %v)", tc.typ, tc.id, k, got, v, resp.GetMetadata())
			}
		}
		for _, k := range tc.absent {
			if _, ok := resp.GetMetadata()[k]; ok {
				t.Errorf("Get(%s/%s) has %s", tc.typ, tc.id, k)
			}
		}
	}
}

func TestGetErrors(t *testing.T) {
	p := resourcegraph.NewFromGraph(fedGraph(t))
	for _, tc := range []struct {
		typ, id string
		code    codes.Code
	}{
		{"region", "mars-1", codes.NotFound},
		{"tenant", "root:acme", codes.NotFound}, // a path is not a tenant ID
		{"tenant", "platform", codes.NotFound},
		{"workspace", "root:nowhere", codes.NotFound},
		{"account", "root:acme/keys/other", codes.NotFound},
		{"account", "root:acme-keys-main", codes.NotFound},
		{"account", "root:acme/keys", codes.NotFound},
		{"galaxy", "milky-way", codes.NotFound},
		{"region", "eu", codes.InvalidArgument},
		{"rg", "eu-central", codes.InvalidArgument},
		{"", "", codes.InvalidArgument},
	} {
		_, err := p.Get(context.Background(), &sisv1.GetRequest{Type: tc.typ, Id: tc.id})
		if status.Code(err) != tc.code {
			t.Errorf("Get(%q, %q) = %v, want %v", tc.typ, tc.id, err, tc.code)
		}
	}
	// Hostile identifiers are clipped in the message.
	_, err := p.Get(context.Background(), &sisv1.GetRequest{Type: "region", Id: strings.Repeat("x", 4000)})
	if status.Code(err) != codes.NotFound || len(status.Convert(err).Message()) > 400 {
		t.Errorf("long id: %v", err)
	}
	// Before any mesh configuration, regions are unknown.
	empty := resourcegraph.NewFromGraph(kcp.NewGraph(kcp.Options{}, nil))
	if _, err := empty.Get(context.Background(), &sisv1.GetRequest{Type: "region", Id: "eu-central"}); status.Code(err) != codes.NotFound {
		t.Errorf("no configuration: %v", err)
	}
	// Unconfigured: FailedPrecondition.
	if _, err := resourcegraph.New().Get(context.Background(), &sisv1.GetRequest{Type: "region", Id: "eu-central"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("unconfigured: %v", err)
	}
}

func TestConfigure(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"", "configuration is empty"},
		{"kubeconfig: ''", "set kubeconfig"},
		{"kubeconfig: /nonexistent/kubeconfig", "loading the kcp client configuration"},
		{"kubeconfig: x\nbogus: 1", "unknown field"},
		{"kubeconfig: x\nsyncTimeout: 2h", "syncTimeout"},
		{"kubeconfig: x\nsyncTimeout: soon", "syncTimeout"},
	} {
		_, err := resourcegraph.New().Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: tc.yaml})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Configure(%q) = %v, want InvalidArgument containing %q", tc.yaml, err, tc.want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add("kubeconfig: /k\nsyncTimeout: 3s")
	f.Add("inCluster: true")
	f.Fuzz(func(t *testing.T, raw string) {
		c, d, err := resourcegraph.ParseConfig(raw)
		if err != nil {
			return
		}
		if d <= 0 || (c.Kubeconfig == "" && !c.InCluster) {
			t.Fatalf("accepted %q: %+v %v", raw, c, d)
		}
	})
}
