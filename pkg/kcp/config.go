package kcp

import (
	"fmt"
	"net/url"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// LoadConfig loads a kubeconfig (the in-cluster configuration when path is empty) with its current context and
// returns the kcp front address without any /clusters/<path> suffix: callers choose the logical cluster with
// ForCluster or Wildcard.
func LoadConfig(path string) (*rest.Config, error) { return LoadConfigContext(path, "") }

// LoadConfigContext is LoadConfig with a named kubeconfig context ("" = the current one). The multi-cluster watch
// lists across every workspace, which kcp allows only to a shard-level identity (kcp's own admin kubeconfig names
// it "shard-base").
func LoadConfigContext(path, context string) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if path == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: path}
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("loading the kcp client configuration: %w", err)
	}
	return Base(cfg)
}

// Base returns a copy of cfg whose Host has no /clusters/<path> suffix.
func Base(cfg *rest.Config) (*rest.Config, error) {
	u, err := url.Parse(cfg.Host)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("kcp server address %q is not a URL", cfg.Host)
	}
	if i := strings.Index(u.Path, "/clusters/"); i >= 0 {
		u.Path = u.Path[:i]
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	out := rest.CopyConfig(cfg)
	out.Host = u.String()
	return out, nil
}

// ForCluster returns a copy of base addressing one logical cluster by path (root:org:team) or name.
func ForCluster(base *rest.Config, path string) *rest.Config {
	out := rest.CopyConfig(base)
	out.Host = strings.TrimSuffix(base.Host, "/") + "/clusters/" + path
	return out
}

// Wildcard returns a copy of base addressing every logical cluster (/clusters/*): lists and watches through it
// span the whole shard, each object carrying its logical cluster in the kcp.io/cluster annotation.
func Wildcard(base *rest.Config) *rest.Config { return ForCluster(base, "*") }
