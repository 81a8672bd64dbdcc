package static

import (
	"context"
	"maps"
	"strings"
	"sync"
	"testing"

	sisv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const graphYAML = `
resources:
  - type: region
    id: eu-central
    metadata: {audiences: " cmk , apeiro-webhook", displayName: EU Central}
  - type: region
    id: us-east
  - type: tenant
    id: tenant-a
    parent: {type: region, id: eu-central}
    metadata: {owner: team-a}
  - type: tenant
    id: tenant-b
    metadata: {region: us-east}
  - type: system
    id: sys-123
    parent: {type: tenant, id: tenant-a}
    metadata: {name: billing}
  - type: system
    id: sys-456
    parent: {type: tenant, id: tenant-b}
  - type: system
    id: sys-789
    parent: {type: tenant, id: tenant-a}
    metadata: {region: override-region}
`

func configured(t *testing.T, y string) *Plugin {
	t.Helper()
	p := New()
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: y}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return p
}

func TestGet(t *testing.T) {
	p := configured(t, graphYAML)
	tests := []struct {
		typ, id string
		want    map[string]string
	}{
		{"region", "eu-central", map[string]string{"audiences": "cmk,apeiro-webhook", "displayName": "EU Central", "region": "eu-central"}},
		{"region", "us-east", map[string]string{"region": "us-east"}},
		{"tenant", "tenant-a", map[string]string{"owner": "team-a", "tenant": "tenant-a", "region": "eu-central", "parentType": "region", "parentId": "eu-central"}},
		{"tenant", "tenant-b", map[string]string{"tenant": "tenant-b", "region": "us-east"}},
		{"system", "sys-123", map[string]string{"name": "billing", "tenant": "tenant-a", "region": "eu-central", "parentType": "tenant", "parentId": "tenant-a"}},
		{"system", "sys-456", map[string]string{"tenant": "tenant-b", "region": "us-east", "parentType": "tenant", "parentId": "tenant-b"}},
		{"system", "sys-789", map[string]string{"tenant": "tenant-a", "region": "override-region", "parentType": "tenant", "parentId": "tenant-a"}},
	}
	for _, tc := range tests {
		got, err := p.Get(context.Background(), &sisv1.GetRequest{Type: tc.typ, Id: tc.id})
		if err != nil {
			t.Errorf("Get(%s/%s): %v", tc.typ, tc.id, err)
			continue
		}
		if !maps.Equal(got.GetMetadata(), tc.want) {
			t.Errorf("Get(%s/%s) = %v, want %v", tc.typ, tc.id, got.GetMetadata(), tc.want)
		}
	}
}

func TestGetReturnsCopy(t *testing.T) {
	p := configured(t, graphYAML)
	req := &sisv1.GetRequest{Type: "region", Id: "us-east"}
	a, _ := p.Get(context.Background(), req)
	a.Metadata["region"] = "tampered"
	b, _ := p.Get(context.Background(), req)
	if b.GetMetadata()["region"] != "us-east" {
		t.Fatal("Get leaked its internal map")
	}
}

func TestGetErrors(t *testing.T) {
	p := configured(t, graphYAML)
	tests := []struct {
		typ, id string
		want    codes.Code
	}{
		{"region", "eu", codes.InvalidArgument},
		{"rg", "eu-central", codes.InvalidArgument},
		{"", "", codes.InvalidArgument},
		{"region", "", codes.InvalidArgument},
		{"région", "ab", codes.InvalidArgument},
		{"region", "eu-west", codes.NotFound},
		{"tenant", "eu-central", codes.NotFound}, // type is part of the key
		{"Region", "eu-central", codes.NotFound}, // case-sensitive
	}
	for _, tc := range tests {
		_, err := p.Get(context.Background(), &sisv1.GetRequest{Type: tc.typ, Id: tc.id})
		if status.Code(err) != tc.want {
			t.Errorf("Get(%q/%q) = %v, want %v", tc.typ, tc.id, err, tc.want)
		}
	}
}

func TestConfigureEmpty(t *testing.T) {
	p := New()
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{}); err != nil {
		t.Fatalf("Configure(\"\"): %v", err)
	}
	if _, err := p.Get(context.Background(), &sisv1.GetRequest{Type: "region", Id: "eu-central"}); status.Code(err) != codes.NotFound {
		t.Fatalf("empty graph Get = %v", err)
	}
}

func TestConfigureRejects(t *testing.T) {
	tests := map[string]struct{ yaml, want string }{
		"bad yaml":          {"resources: [", "decode YAML"},
		"unknown field":     {"resource: []", "unknown field"},
		"unknown nested":    {"resources: [{type: region, id: eu-1, meta: {}}]", "unknown field"},
		"short id":          {"resources: [{type: region, id: eu}]", "at least 3"},
		"short type":        {"resources: [{type: rg, id: eu-1}]", "at least 3"},
		"blank id":          {"resources: [{type: region, id: ' eu-1'}]", "whitespace"},
		"duplicate":         {"resources: [{type: region, id: eu-1}, {type: region, id: eu-1}]", "duplicate resource"},
		"dangling parent":   {"resources: [{type: tenant, id: t-1, parent: {type: region, id: nowhere}}]", "does not exist"},
		"self parent":       {"resources: [{type: tenant, id: t-1, parent: {type: tenant, id: t-1}}]", "cycle"},
		"cycle":             {"resources: [{type: tenant, id: t-1, parent: {type: tenant, id: t-2}}, {type: tenant, id: t-2, parent: {type: tenant, id: t-1}}]", "cycle"},
		"empty audience":    {"resources: [{type: region, id: eu-1, metadata: {audiences: 'a,,b'}}]", "empty audience"},
		"duplicate aud":     {"resources: [{type: region, id: eu-1, metadata: {audiences: 'a, a'}}]", "duplicate audience"},
		"non-string values": {"resources: [{type: region, id: eu-1, metadata: {n: {x: 1}}}]", "decode YAML"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := configured(t, graphYAML)
			_, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: tc.yaml})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Configure = %v, want InvalidArgument containing %q", err, tc.want)
			}
			if _, err := p.Get(context.Background(), &sisv1.GetRequest{Type: "region", Id: "eu-central"}); err != nil {
				t.Fatalf("previous graph lost: %v", err)
			}
		})
	}
}

func TestSplitAudiences(t *testing.T) {
	got, err := SplitAudiences(" a, b ,c")
	if err != nil || strings.Join(got, "|") != "a|b|c" {
		t.Fatalf("SplitAudiences = %v, %v", got, err)
	}
	if got, err := SplitAudiences("  "); err != nil || got != nil {
		t.Fatalf("blank = %v, %v", got, err)
	}
}

func TestConcurrentConfigure(t *testing.T) {
	p := configured(t, graphYAML)
	alt := strings.ReplaceAll(graphYAML, "EU Central", "Europe Central")
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 100 {
				y := graphYAML
				if (i+j)%2 == 0 {
					y = alt
				}
				if _, err := p.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: y}); err != nil {
					t.Error(err)
				}
			}
		})
		wg.Go(func() {
			for range 200 {
				got, err := p.Get(ctx, &sisv1.GetRequest{Type: "region", Id: "eu-central"})
				if err != nil {
					t.Error(err)
					return
				}
				if n := got.GetMetadata()["displayName"]; n != "EU Central" && n != "Europe Central" {
					t.Errorf("torn read %q", n)
				}
			}
		})
	}
	wg.Wait()
}
