package main

import (
	"flag"
	"fmt"

	"k8s.io/client-go/rest"

	"github.com/apeirora/apeiro-cmk/pkg/kcp"
)

// kcp authorizes a list or watch across all workspaces (/clusters/*) only for the shard's privileged group; no RBAC
// object can grant it. Everything else the webhook does in kcp (point reads at admission, status, Secrets, Events)
// addresses one workspace and is authorized by RBAC (deploy/kcp). --kcp-watch-context lets the two run as
// different identities, so the writes into tenant workspaces are bounded by deploy/kcp and a bug that addresses
// the wrong workspace or kind is refused by kcp instead of being carried out with shard-admin rights.
func bindWatchContext(fs *flag.FlagSet, v *string) {
	fs.StringVar(v, "kcp-watch-context", "", "With --kcp-kubeconfig: the kubeconfig context for the list/watch across all workspaces (/clusters/*), which kcp allows only to its privileged group (empty: --kcp-context, for everything). Everything else then runs as --kcp-context, whose permissions deploy/kcp grants.")
}

// watchConfig returns the configuration of the cross-workspace list/watch: base itself unless --kcp-watch-context
// names another context of the same kubeconfig.
func (k *kcpOptions) watchConfig(base *rest.Config) (*rest.Config, error) {
	if k.watchContext == "" {
		return base, nil
	}
	if k.inCluster || k.kubeconfig == "" {
		return nil, fmt.Errorf("--kcp-watch-context needs --kcp-kubeconfig (the in-cluster configuration has no contexts)")
	}
	w, err := kcp.LoadConfigContext(k.kubeconfig, k.watchContext)
	if err != nil {
		return nil, fmt.Errorf("--kcp-watch-context %q: %w", k.watchContext, err)
	}
	if w.Host != base.Host {
		// Both must address the same kcp: the watch's logical cluster names are used in base's requests.
		return nil, fmt.Errorf("--kcp-watch-context %q addresses %s, --kcp-context addresses %s: they must be the same kcp", k.watchContext, w.Host, base.Host)
	}
	return w, nil
}
