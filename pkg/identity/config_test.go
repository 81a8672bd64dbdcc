package identity

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

func TestParseConfig(t *testing.T) {
	ok := "platform: [{url: https://kc.example.org/realms/pm, audiences: [cmk]}]\ntenantIssuers: true\nroles: {Viewer: [keys.read]}\n"
	c, err := ParseConfig([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if c.AllowLoopback {
		t.Fatal("allowLoopback must default to false (production never reaches loopback)")
	}
	if c, err := ParseConfig([]byte(ok + "allowLoopback: true\n")); err != nil || !c.AllowLoopback {
		t.Fatalf("allowLoopback: true: %v", err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"platform: [{url: http://kc.example.org, audiences: [cmk]}]", "https required"},
		{"platform: [{url: https://kc.example.org}]", "audience is required"},
		{"platform: [{url: https://kc.example.org, audiences: [a], tenant: acme}]", "not tenant-scoped"},
		{"leeway: 2h", "leeway"},
		{"spiffe: {audiences: [cmk]}", "workloadAPIAddr or bundleFiles"},
		{"workloadKeys: {bindAddress: ':9444'}", "needs spiffe"},
		{"roles: {Viewer: [keys.steal]}", "unknown permission"},
		{"platfrom: []", "unknown field"},
	} {
		if _, err := ParseConfig([]byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestKubeLookupAndTenantIssuers(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = cmkv1.AddToScheme(scheme)
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "acme-ns", Labels: map[string]string{cmkv1.TenantLabel: "acme"}}},
		// The key claims another tenant by label; the namespace label wins.
		&cmkv1.ServiceEncryptionKey{ObjectMeta: metav1.ObjectMeta{Namespace: "acme-ns", Name: "k", Labels: map[string]string{cmkv1.TenantLabel: "globex"}},
			Spec: cmkv1.ServiceEncryptionKeySpec{WorkloadIdentities: []string{"spiffe://t/tenant/acme/x"}}},
		&cmkv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: cmkv1.TenantSpec{Type: cmkv1.TenantTypeRoot, Region: "eu",
			OIDCProvider: &cmkv1.OIDCProvider{Issuer: "https://idp.acme.example", JWKSURI: "https://idp.acme.example/jwks", Audiences: []string{"cmk"}}}},
		&cmkv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "noaud"}, Spec: cmkv1.TenantSpec{Type: cmkv1.TenantTypeRoot, Region: "eu",
			OIDCProvider: &cmkv1.OIDCProvider{Issuer: "https://idp.noaud.example", JWKSURI: "https://idp.noaud.example/jwks"}}},
		&cmkv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "plain"}, Spec: cmkv1.TenantSpec{Type: cmkv1.TenantTypeRoot, Region: "eu"}},
	).Build()
	g, err := KubeKeyLookup{Reader: c}.Lookup(context.Background(), "acme-ns", "k")
	if err != nil || g.Tenant != "acme" || len(g.WorkloadIdentities) != 1 {
		t.Fatalf("lookup: %+v, %v", g, err)
	}
	if _, err := (KubeKeyLookup{Reader: c}).Lookup(context.Background(), "acme-ns", "missing"); !errors.Is(err, ErrNoSuchKey) {
		t.Fatalf("missing key: %v", err)
	}
	iss, skipped, err := TenantIssuers(context.Background(), c)
	if err != nil || len(iss) != 1 || iss[0].Tenant != "acme" || iss[0].JWKSURL == "" || len(skipped) != 1 || skipped[0] != "noaud" {
		t.Fatalf("tenant issuers: %+v, skipped %v, %v", iss, skipped, err)
	}
}

// TestExampleConfigParses keeps the shipped example valid, and its roles equal to the profile's defaults.
func TestExampleConfigParses(t *testing.T) {
	c, err := LoadConfig("../../examples/identity/identity-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewRoleMap(RoleConfig{Roles: c.Roles})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := NewRoleMap(RoleConfig{})
	for role := range DefaultRoles() {
		if strings.Join(m.Permissions(role), ",") != strings.Join(d.Permissions(role), ",") {
			t.Errorf("example role %s = %v, default %v", role, m.Permissions(role), d.Permissions(role))
		}
	}
}
