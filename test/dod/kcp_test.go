package dod_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	sisv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/admissiontest"
	"github.com/apeirora/apeiro-cmk/pkg/admission/pluginbacked"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpserver"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcptest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/sis/resourcegraph"
)

// TestDoDSISQueriesKCP: "the SIS plugin successfully queries the KCP API to validate a mock Tenant CR". A real kcp
// holds the workspace tree and the Platform Mesh configuration; the ApeiroResourceGraphPlugin watches it; the
// Tenant admission handler asks the plugin (as with --region-source=sis) about a valid and an invalid mock Tenant.
func TestDoDSISQueriesKCP(t *testing.T) {
	const item = "SIS plugin queries the KCP API to validate a mock Tenant CR"
	verdict, evidence := "FAIL", ""
	defer func() {
		fmt.Printf("DoD %s: %s %s\n", item, verdict, evidence)
	}()
	s := kcptest.Start(t)
	kcptest.NewWorld(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	plugin := resourcegraph.New()
	if _, err := plugin.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: "kubeconfig: " + s.Kubeconfig + "\ncontext: " + kcpserver.AdminContext + "\nsyncTimeout: 30s\n"}); err != nil {
		evidence = "Configure: " + err.Error()
		t.Fatal(evidence)
	}
	defer plugin.Close()
	tenant, err := plugin.Get(ctx, &sisv1.GetRequest{Type: "tenant", Id: "acme.eu"})
	if err != nil {
		evidence = "Get(tenant/acme.eu): " + err.Error()
		t.Fatal(evidence)
	}

	w := admissiontest.NewWorld()
	mux := admissiontest.Mux(w.Handlers(admission.Handlers{Regions: &pluginbacked.RegionPolicy{SIS: kcpSIS{plugin}}}), admission.Limits{})
	validate := func(name, region string, aud []string) (bool, string) {
		obj := admissiontest.TenantObject(hierarchy.Tenant{ID: name, Type: hierarchy.Root})
		obj.Spec.Region = region
		if aud != nil {
			obj.Spec.OIDCProvider = &cmkv1.OIDCProvider{Issuer: "https://idp.example.com", JWKSURI: "https://idp.example.com/jwks", Audiences: aud}
		}
		rec := admissiontest.Post(mux, admission.PathValidateTenant, admissiontest.Req{Kind: "Tenant", Name: name, Object: obj}.Body())
		ar, err := admissiontest.Decode(rec.Body)
		if err != nil {
			return false, err.Error()
		}
		msg := ""
		if ar.Response.Result != nil {
			msg = ar.Response.Result.Message
		}
		return ar.Response.Allowed, msg
	}
	okAllowed, _ := validate("mock-valid", "eu-central", []string{"cmk"})
	badAllowed, badMsg := validate("mock-invalid", "mars-1", nil)
	evidence = fmt.Sprintf("kcp %s: tenant acme.eu=%s/%s from workspace %s; mock Tenant eu-central[cmk] allowed=%v; mock Tenant mars-1 allowed=%v (%q)",
		s.Base.Host, tenant.GetMetadata()["tenantType"], tenant.GetMetadata()["parent"], tenant.GetMetadata()["workspace"], okAllowed, badAllowed, badMsg)
	if !okAllowed || badAllowed || !strings.Contains(badMsg, "mars-1") {
		t.Fatal(evidence)
	}
	verdict = "PASS"
}

// kcpSIS calls the plugin's server method directly, as the builtin catalog does.
type kcpSIS struct{ p *resourcegraph.Plugin }

func (c kcpSIS) Get(ctx context.Context, in *sisv1.GetRequest, _ ...grpc.CallOption) (*sisv1.GetResponse, error) {
	return c.p.Get(ctx, in)
}
