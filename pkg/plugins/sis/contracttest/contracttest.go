// Package contracttest is the reusable contract suite for
// SystemInformationService plugins. Run loads any implementation through the
// real plugin-sdk catalog — as an in-process builtin and as an external
// go-plugin process — configures it from YAML and checks:
//
//   - Get returns (at least) the expected metadata of every fixture resource,
//     and a region's `audiences` as the webhook reads them;
//   - an unknown resource is an error (NotFound);
//   - the proto's protovalidate rules (id and type required, at least 3
//     characters): with the host validating requests as CMK does, short
//     identifiers never reach the plugin (InvalidArgument); with host-side
//     validation off, the plugin must refuse them itself with
//     InvalidArgument — in builtin mode (no SDK interceptor) that is the
//     implementation's own check; in external mode, if the binary is served
//     with plugin-sdk's EnableInputValidation, the SDK interceptor's
//     "request validation failed" answer is required;
//   - Configure concurrent with Get, Configure("") for optional
//     configuration, invalid YAML rejected at load with a clear error,
//     go-plugin health SERVING, clean shutdown.
package contracttest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	sisv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

// DefaultName is the profile name used when Config.Name is empty.
const DefaultName = "APEIRO_RESOURCE_GRAPH"

// sdkValidationMessage prefixes the InvalidArgument of plugin-sdk's
// server-side validation interceptor (internal/bootstrap/serve.go).
const sdkValidationMessage = "request validation failed"

// Config describes the implementation under test.
type Config struct {
	// Name is the profile (and builtin) name; default APEIRO_RESOURCE_GRAPH.
	Name string
	// BuiltIn returns a fresh builtin registered under Name. Nil skips builtin mode.
	BuiltIn func() catalog.BuiltInPlugin
	// BinaryPackage is the external plugin's main package. Empty skips external mode.
	BinaryPackage string
	Args          []string
	// ServedWithInputValidation: the binary serves with
	// pluginoption.EnableInputValidation().
	ServedWithInputValidation bool

	// YAML configures the plugin so that Fixtures hold.
	YAML string
	// ConfigOptional: Configure("") must succeed; otherwise it must fail.
	ConfigOptional bool
	// InvalidYAML must be rejected (default: broken YAML); InvalidYAMLMessage,
	// if set, must appear in the load error.
	InvalidYAML        string
	InvalidYAMLMessage string

	Fixtures Fixtures
}

// Fixtures are facts about the graph YAML describes.
type Fixtures struct {
	// Resources must be found; their Metadata must be a subset of the answer.
	Resources []Resource
	// Regions are resources of type "region" whose metadata key "audiences"
	// must split (on commas, blanks trimmed) into exactly Audiences.
	Regions []Region
	// Missing does not exist (default region/contract-no-such-region).
	Missing *Resource
}

// Resource is an expected resource.
type Resource struct {
	Type, ID string
	Metadata map[string]string
}

// Region is an expected region and its OIDC audiences.
type Region struct {
	ID        string
	Audiences []string
}

func (c *Config) defaults() {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.InvalidYAML == "" {
		c.InvalidYAML = "{{{ this is: [not yaml"
	}
	if c.Fixtures.Missing == nil {
		c.Fixtures.Missing = &Resource{Type: "region", ID: "contract-no-such-region"}
	}
}

func (c *Config) spec(yaml string) plugintest.Spec {
	return plugintest.Spec{
		Type: host.TypeSystemInformation, Name: c.Name, YAML: yaml,
		BuiltIn: c.BuiltIn, Package: c.BinaryPackage, Args: c.Args,
	}
}

// Run runs the suite in every load mode the Config supports.
func Run(t *testing.T, c Config) {
	t.Helper()
	c.defaults()
	if len(c.Fixtures.Resources) == 0 {
		t.Fatal("contracttest: Fixtures.Resources must name at least one resource")
	}
	for _, mode := range c.spec("").Modes() {
		t.Run(string(mode), func(t *testing.T) {
			l := plugintest.Load(t, c.spec(c.YAML), mode)
			sis, err := l.SystemInformation()
			if err != nil {
				t.Fatal(err)
			}
			t.Run("Get", func(t *testing.T) { checkGet(t, &c, sis) })
			if len(c.Fixtures.Regions) > 0 {
				t.Run("region-audiences", func(t *testing.T) { checkRegions(t, &c, sis) })
			}
			t.Run("not-found", func(t *testing.T) {
				m := c.Fixtures.Missing
				_, err := sis.Get(ctx(t), &sisv1.GetRequest{Type: m.Type, Id: m.ID})
				if status.Code(err) != codes.NotFound {
					t.Fatalf("Get(%s/%s) = %v, want NotFound", m.Type, m.ID, err)
				}
			})
			t.Run("validation-host", func(t *testing.T) { checkShortIDs(t, sis, "") })
			t.Run("validation-plugin", func(t *testing.T) {
				spec := c.spec(c.YAML)
				spec.SkipRequestValidation = true
				raw, err := plugintest.Load(t, spec, mode).SystemInformation()
				if err != nil {
					t.Fatal(err)
				}
				want := ""
				if mode == plugintest.ModeExternal && c.ServedWithInputValidation {
					want = sdkValidationMessage
				}
				checkShortIDs(t, raw, want)
			})
			t.Run("reconfigure-under-load", func(t *testing.T) { checkReconfigure(t, &c, l, sis) })
			checkConfigLifecycle(t, &c, mode)
			t.Run("health", func(t *testing.T) { plugintest.CheckHealth(t, l) })
			t.Run("shutdown", func(t *testing.T) { plugintest.CheckShutdown(t, l) })
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func checkGet(t *testing.T, c *Config, sis sisv1.SystemInformationServiceClient) {
	for _, r := range c.Fixtures.Resources {
		resp, err := sis.Get(ctx(t), &sisv1.GetRequest{Type: r.Type, Id: r.ID})
		if err != nil {
			t.Fatalf("Get(%s/%s): %v", r.Type, r.ID, err)
		}
		got := resp.GetMetadata()
		for k, v := range r.Metadata {
			if gv, ok := got[k]; !ok || gv != v {
				t.Fatalf("Get(%s/%s) metadata[%q] = %q (present %v), want %q; all: %v", r.Type, r.ID, k, gv, ok, v, got)
			}
		}
	}
}

func checkRegions(t *testing.T, c *Config, sis sisv1.SystemInformationServiceClient) {
	for _, r := range c.Fixtures.Regions {
		resp, err := sis.Get(ctx(t), &sisv1.GetRequest{Type: "region", Id: r.ID})
		if err != nil {
			t.Fatalf("Get(region/%s): %v", r.ID, err)
		}
		var got []string
		for a := range strings.SplitSeq(resp.GetMetadata()["audiences"], ",") {
			if a = strings.TrimSpace(a); a != "" {
				got = append(got, a)
			}
		}
		want := slices.Clone(r.Audiences)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("region %s audiences = %v, want %v", r.ID, got, want)
		}
	}
}

// checkShortIDs sends identifiers that violate min_len = 3 / required.
func checkShortIDs(t *testing.T, sis sisv1.SystemInformationServiceClient, wantMessage string) {
	t.Helper()
	for _, req := range []*sisv1.GetRequest{
		{Type: "region", Id: "eu"},
		{Type: "rg", Id: "eu-central"},
		{Type: "region", Id: ""},
		{Type: "", Id: ""},
	} {
		_, err := sis.Get(ctx(t), req)
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("Get(type=%q, id=%q) = %v, want InvalidArgument", req.GetType(), req.GetId(), err)
		}
		if wantMessage != "" && !strings.Contains(status.Convert(err).Message(), wantMessage) {
			t.Fatalf("Get(type=%q, id=%q) = %v, want the message to contain %q", req.GetType(), req.GetId(), err, wantMessage)
		}
	}
}

func checkReconfigure(t *testing.T, c *Config, l *plugintest.Loaded, sis sisv1.SystemInformationServiceClient) {
	r := c.Fixtures.Resources[0]
	plugintest.CheckReconfigureUnderLoad(t, l, func(ctx context.Context) error {
		_, err := sis.Get(ctx, &sisv1.GetRequest{Type: r.Type, Id: r.ID})
		return err
	})
}

func checkConfigLifecycle(t *testing.T, c *Config, mode plugintest.Mode) {
	plugintest.CheckConfigLifecycle(t, plugintest.ConfigCheck{Spec: c.spec, Optional: c.ConfigOptional,
		InvalidYAML: c.InvalidYAML, InvalidYAMLMessage: c.InvalidYAMLMessage}, mode)
}
