package kcpserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
)

// The webhook's own kcp identity in tests and the dev stack: a user kcp authenticates from its static token file
// and authorizes only through RBAC objects (deploy/kcp). kcp gives it nothing by itself.
const (
	WebhookUser  = "apeiro-cmk-webhook"
	WebhookGroup = "apeiro-cmk:webhook"
)

// tokenFile writes kcp's --token-auth-file under dir with one line for WebhookUser and returns its path and the
// user's bearer token. kcp keeps its own admin tokens besides (they are not in this file).
func tokenFile(dir string) (path, token string, err error) {
	token = controlplane.RandomToken()
	path = filepath.Join(dir, "tokens.csv")
	line := fmt.Sprintf("%s,%s,%s,%q\n", token, WebhookUser, WebhookUser, WebhookGroup)
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		return "", "", fmt.Errorf("writing kcp's token file: %w", err)
	}
	return path, token, nil
}

// WebhookConfig is the configuration of WebhookUser: kcp's address and CA as in Base, with the user's token and no
// client certificate.
func (s *Server) WebhookConfig() *rest.Config {
	c := rest.AnonymousClientConfig(s.Base)
	c.BearerToken = s.webhookToken
	return c
}

// WriteWebhookKubeconfig writes a kubeconfig for the webhook binary to path: its current context (WebhookContext)
// is WebhookUser, and it also holds the shard admin context (AdminContext) for the one thing RBAC cannot grant in
// kcp, the list/watch across all workspaces.
func (s *Server) WriteWebhookKubeconfig(path string) error {
	admin, err := clientcmd.LoadFromFile(s.Kubeconfig)
	if err != nil {
		return fmt.Errorf("reading kcp's admin kubeconfig: %w", err)
	}
	shard, ok := admin.Contexts[AdminContext]
	if !ok {
		return fmt.Errorf("kcp's admin kubeconfig has no context %q", AdminContext)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[shard.Cluster] = admin.Clusters[shard.Cluster]
	cfg.AuthInfos[shard.AuthInfo] = admin.AuthInfos[shard.AuthInfo]
	cfg.Contexts[AdminContext] = shard
	cfg.AuthInfos[WebhookUser] = &clientcmdapi.AuthInfo{Token: s.webhookToken}
	cfg.Contexts[WebhookContext] = &clientcmdapi.Context{Cluster: shard.Cluster, AuthInfo: WebhookUser}
	cfg.CurrentContext = WebhookContext
	return clientcmd.WriteToFile(*cfg, path)
}

// WebhookContext is WebhookUser's context in WriteWebhookKubeconfig's kubeconfig.
const WebhookContext = "apeiro-cmk-webhook"

// rbacKinds are the kinds ApplyKustomization creates; deploy/kcp holds nothing else.
var rbacKinds = map[string]schema.GroupVersionResource{
	"ClusterRole":        rbacv1.SchemeGroupVersion.WithResource("clusterroles"),
	"ClusterRoleBinding": rbacv1.SchemeGroupVersion.WithResource("clusterrolebindings"),
	"Role":               rbacv1.SchemeGroupVersion.WithResource("roles"),
	"RoleBinding":        rbacv1.SchemeGroupVersion.WithResource("rolebindings"),
}

// ApplyKustomization creates, in the logical cluster at path, the objects of the files that dir's
// kustomization.yaml lists under resources (RBAC kinds only; existing objects are kept), in the kustomization's
// namespace if it sets one. It is what `kubectl apply -k dir` does for these plain lists of files (deploy/kcp uses
// no other kustomize feature that changes objects' meaning), without needing kubectl.
func ApplyKustomization(ctx context.Context, base *rest.Config, path, dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return err
	}
	var k struct {
		Namespace string   `json:"namespace"`
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		return fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	dc, err := Client(base, path)
	if err != nil {
		return err
	}
	for _, f := range k.Resources {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			var u unstructured.Unstructured
			if err := dec.Decode(&u.Object); err == io.EOF {
				break
			} else if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			gvr, ok := rbacKinds[u.GetKind()]
			if !ok {
				return fmt.Errorf("%s: unexpected kind %q", f, u.GetKind())
			}
			if k.Namespace != "" && (u.GetKind() == "Role" || u.GetKind() == "RoleBinding") {
				u.SetNamespace(k.Namespace) // kustomize's namespace transformer
			}
			ri := dc.Resource(gvr).Namespace(u.GetNamespace())
			if _, err := ri.Create(ctx, &u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating %s %s in %s: %w", u.GetKind(), u.GetName(), path, err)
			}
		}
	}
	return nil
}
