package static

import (
	"context"
	"maps"
	"testing"

	sisv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"
)

// The static plugin answers the Platform Mesh system types with the IDs and
// derived keys the kcp-backed resource-graph plugin uses.
func TestPlatformMeshTypes(t *testing.T) {
	p := configured(t, `
resources:
  - {type: region, id: eu-central}
  - {type: tenant, id: "root:acme", parent: {type: region, id: eu-central}}
  - {type: workspace, id: "root:acme:payments", parent: {type: tenant, id: "root:acme"}}
  - {type: account, id: "root:acme:payments/default/main", parent: {type: workspace, id: "root:acme:payments"}, metadata: {keystore: LOCAL}}
  - {type: account, id: "odd-account-id", parent: {type: tenant, id: "root:acme"}}
`)
	for _, tc := range []struct {
		typ, id string
		want    map[string]string
	}{
		{TypeAccount, "root:acme:payments/default/main", map[string]string{
			KeyWorkspace: "root:acme:payments", KeyNamespace: "default", KeyName: "main", "keystore": "LOCAL",
			KeyTenant: "root:acme", KeyRegion: "eu-central", KeyParentType: TypeWorkspace, KeyParentID: "root:acme:payments"}},
		// An ID not of the form workspace/namespace/name derives nothing from the ID.
		{TypeAccount, "odd-account-id", map[string]string{KeyTenant: "root:acme", KeyRegion: "eu-central", KeyParentType: TypeTenant, KeyParentID: "root:acme"}},
		{TypeWorkspace, "root:acme:payments", map[string]string{KeyTenant: "root:acme", KeyRegion: "eu-central", KeyParentType: TypeTenant, KeyParentID: "root:acme"}},
	} {
		got, err := p.Get(context.Background(), &sisv1.GetRequest{Type: tc.typ, Id: tc.id})
		if err != nil || !maps.Equal(got.GetMetadata(), tc.want) {
			t.Errorf("Get(%s/%s) = %v, %v; want %v", tc.typ, tc.id, got.GetMetadata(), err, tc.want)
		}
	}
	for _, typ := range PlatformMeshTypes() {
		if !IsPlatformMeshType(typ) {
			t.Errorf("%s not recognised", typ)
		}
	}
	if IsPlatformMeshType("system") {
		t.Error("system is not a Platform Mesh type")
	}
}
