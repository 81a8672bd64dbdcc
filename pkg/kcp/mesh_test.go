package kcp

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
)

const goodMesh = `
regions:
  - name: eu-central
    audiences: [cmk, apeiro-webhook]
  - name: us-east
  - name: ap-south
    audiences: []
`

func TestParseMeshConfig(t *testing.T) {
	for _, tc := range []struct {
		name, raw, wantErr string
	}{
		{"good", goodMesh, ""},
		{"empty", "  ", "missing or empty"},
		{"no regions", "regions: []", "at least one region"},
		{"unknown field", "regions: [{name: eu-central, audience: [cmk]}]", "unknown field"},
		{"not yaml", "{{{", "decoding YAML"},
		{"bad region", "regions: [{name: EU_Central}]", "not a DNS label"},
		{"duplicate region", "regions: [{name: eu}, {name: eu}]", "listed twice"},
		{"blank audience", "regions: [{name: eu, audiences: ['']}]", "printable ASCII"},
		{"audience with space", "regions: [{name: eu, audiences: ['a b']}]", "printable ASCII"},
		{"duplicate audience", "regions: [{name: eu, audiences: [a, a]}]", "listed twice"},
		{"too big", "regions: [{name: eu}]\n#" + strings.Repeat("x", MaxMeshConfigBytes), "more than the"},
		{"too many regions", manyRegions(MaxRegions + 1), "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMeshConfig(tc.raw)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseMeshConfig: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseMeshConfig = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func manyRegions(n int) string {
	var b strings.Builder
	b.WriteString("regions:\n")
	for i := range n {
		b.WriteString("  - name: r")
		b.WriteString(strings.Repeat("a", i%50))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(itoa(i))
		b.WriteString("\n")
	}
	return b.String()
}

func itoa(i int) string {
	const d = "0123456789"
	if i < 10 {
		return d[i : i+1]
	}
	return itoa(i/10) + d[i%10:i%10+1]
}

func TestMeshPolicy(t *testing.T) {
	g := NewGraph(Options{}, nil)
	p := MeshPolicy{Graph: g}
	if err := p.CheckRegion(context.Background(), "eu-central", nil); !errors.Is(err, ErrNoMeshConfig) {
		t.Fatalf("before any configuration: %v, want ErrNoMeshConfig", err)
	}
	cfg, err := ParseMeshConfig(goodMesh)
	if err != nil {
		t.Fatal(err)
	}
	g.SetMesh(cfg)
	for _, tc := range []struct {
		region  string
		aud     []string
		wantMsg string // "" = allowed
		field   string
	}{
		{"eu-central", []string{"cmk"}, "", ""},
		{"eu-central", nil, "", ""},
		{"us-east", []string{"anything"}, "", ""},
		{"mars-1", nil, `region "mars-1" is not a Platform Mesh region (allowed: ap-south, eu-central, us-east)`, "spec.region"},
		{"eu-central", []string{"cmk", "evil"}, `audience "evil" is not allowed in region "eu-central" (allowed: cmk, apeiro-webhook)`, "spec.oidcProvider.audiences"},
		{"ap-south", []string{"cmk"}, `(allowed: none)`, "spec.oidcProvider.audiences"},
	} {
		err := p.CheckRegion(context.Background(), tc.region, tc.aud)
		if tc.wantMsg == "" {
			if err != nil {
				t.Errorf("%s %v: %v, want allowed", tc.region, tc.aud, err)
			}
			continue
		}
		var pe *admission.PolicyError
		if !errors.As(err, &pe) || !strings.Contains(pe.Msg, tc.wantMsg) || pe.Field != tc.field {
			t.Errorf("%s %v: %v, want a PolicyError on %s containing %q", tc.region, tc.aud, err, tc.field, tc.wantMsg)
		}
	}
	// A rejected revision keeps the previous configuration in force.
	g.RejectMesh(errors.New("broken"))
	if err := p.CheckRegion(context.Background(), "eu-central", []string{"cmk"}); err != nil {
		t.Fatalf("after a rejected revision: %v", err)
	}
	if g.MeshError() != "broken" {
		t.Fatalf("MeshError = %q", g.MeshError())
	}
}

func FuzzParseMeshConfig(f *testing.F) {
	f.Add(goodMesh)
	f.Add("regions: [{name: eu, audiences: [a]}]")
	f.Add("regions: [{name: \x00}]")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := ParseMeshConfig(raw)
		if err != nil {
			return
		}
		// Whatever parses is usable and bounded.
		if len(c.Regions) == 0 || len(c.Regions) > MaxRegions {
			t.Fatalf("accepted %d regions", len(c.Regions))
		}
		for _, r := range c.Regions {
			if !regionName.MatchString(r.Name) {
				t.Fatalf("accepted region %q", r.Name)
			}
			_ = c.Check(r.Name, []string{"x"})
		}
	})
}
