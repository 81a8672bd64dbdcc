package main

import (
	"testing"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/apeirora/apeiro-cmk/pkg/controllers/inuse"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
)

// In kcp mode the in-use finalizer follows --in-use-finalizer exactly as on plain Kubernetes: off means nothing is
// stamped and no controller is added; on means the mutating webhook stamps it and the controller hears the shared
// watch's Account events after the key controllers do.
func TestSetupKCPInUse(t *testing.T) {
	base := &rest.Config{Host: "https://kcp.invalid"}
	model := hierarchy.New(hierarchy.Config{})
	graph := kcp.NewGraph(kcp.Options{}, model)

	var heard []string
	prev := func(ev kcp.ObjectEvent) { heard = append(heard, ev.Name) }

	off := kcp.WatcherOptions{OnAccount: prev}
	fin, err := setupKCPInUse(nil, options{inUse: inUseOptions{enabled: false, grace: time.Second}}, base, graph, model, &off)
	if err != nil || fin != "" {
		t.Fatalf("--in-use-finalizer=false: finalizer %q, err %v; want nothing stamped", fin, err)
	}
	off.OnAccount(kcp.ObjectEvent{Name: "a"})
	if len(heard) != 1 {
		t.Fatalf("--in-use-finalizer=false must leave the Account handler alone, heard %v", heard)
	}

	if _, err := setupKCPInUse(nil, options{inUse: inUseOptions{enabled: true}}, base, graph, model, &off); err == nil {
		t.Fatal("a zero grace was accepted")
	}

	mgr, err := ctrl.NewManager(base, ctrl.Options{Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	on := kcp.WatcherOptions{OnAccount: prev}
	fin, err = setupKCPInUse(mgr, options{inUse: inUseOptions{enabled: true, grace: time.Second}}, base, graph, model, &on)
	if err != nil || fin != inuse.Finalizer {
		t.Fatalf("--in-use-finalizer=true: finalizer %q, err %v", fin, err)
	}
	on.OnAccount(kcp.ObjectEvent{Cluster: "lc", Namespace: "keys", Name: "b"})
	if len(heard) != 2 || heard[1] != "b" {
		t.Fatalf("the key controllers' handler must still hear Account events, heard %v", heard)
	}
}
