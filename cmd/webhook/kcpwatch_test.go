package main

import (
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/apeirora/apeiro-cmk/pkg/kcp"
)

// --kcp-watch-context picks the identity of the cross-workspace watch; everything else stays on --kcp-context. A
// watch identity that cannot be loaded, or that talks to another kcp, is refused at start instead of mixing two
// servers' logical cluster names.
func TestKCPWatchConfig(t *testing.T) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kcp"] = &clientcmdapi.Cluster{Server: "https://kcp.example:6443/clusters/root"}
	cfg.Clusters["other"] = &clientcmdapi.Cluster{Server: "https://other.example:6443"}
	cfg.AuthInfos["webhook"] = &clientcmdapi.AuthInfo{Token: "restricted"}
	cfg.AuthInfos["shard"] = &clientcmdapi.AuthInfo{Token: "privileged"}
	cfg.Contexts["webhook"] = &clientcmdapi.Context{Cluster: "kcp", AuthInfo: "webhook"}
	cfg.Contexts["shard-base"] = &clientcmdapi.Context{Cluster: "kcp", AuthInfo: "shard"}
	cfg.Contexts["elsewhere"] = &clientcmdapi.Context{Cluster: "other", AuthInfo: "shard"}
	cfg.CurrentContext = "webhook"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	base, err := kcp.LoadConfigContext(path, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		o         kcpOptions
		wantToken string // "" = error
		wantErr   string
	}{
		{"unset: one identity", kcpOptions{kubeconfig: path}, "restricted", ""},
		{"shard context", kcpOptions{kubeconfig: path, watchContext: "shard-base"}, "privileged", ""},
		{"unknown context", kcpOptions{kubeconfig: path, watchContext: "nope"}, "", `"nope"`},
		{"another kcp", kcpOptions{kubeconfig: path, watchContext: "elsewhere"}, "", "must be the same kcp"},
		{"in-cluster", kcpOptions{inCluster: true, watchContext: "shard-base"}, "", "needs --kcp-kubeconfig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := tc.o.watchConfig(base)
			if tc.wantToken == "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one mentioning %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if w.BearerToken != tc.wantToken || w.Host != "https://kcp.example:6443" {
				t.Fatalf("watch identity %q at %s, want %q at the kcp base address", w.BearerToken, w.Host, tc.wantToken)
			}
		})
	}
}
