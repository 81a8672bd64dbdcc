package certrenew_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/pkg/certrenew"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/certissuer/certmanager"
)

// TestDeployComponentConfig: the renewal configuration shipped in deploy/components/cert-renewal is accepted as the
// webhook accepts it at start (config, targets, the cert-manager issuer's own YAML, equal trust domains).
func TestDeployComponentConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "components", "cert-renewal", "renewal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(b, &cm); err != nil {
		t.Fatal(err)
	}
	cfg, err := certrenew.ParseConfig([]byte(cm.Data["renewal.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	targets, err := cfg.BuildTargets(fake.NewClientset())
	if err != nil || len(targets) != 2 {
		t.Fatalf("targets %v, %v", targets, err)
	}
	issuer := certmanager.New(certmanager.WithRESTConfig(&rest.Config{Host: "https://127.0.0.1:1"}))
	if _, err := issuer.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: cfg.Issuer}); err != nil {
		t.Fatal(err)
	}
	if issuer.TrustDomain() != cfg.TrustDomain {
		t.Fatalf("trust domains differ: issuer %q, loop %q", issuer.TrustDomain(), cfg.TrustDomain)
	}
}
