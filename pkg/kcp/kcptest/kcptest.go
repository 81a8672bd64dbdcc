// Package kcptest starts a real kcp for tests and provisions the standard Platform Mesh fixture in it. A test that
// uses it skips on a developer machine without KCP_BIN (run `make kcp-bin`) and fails in CI (internal/testpeers).
package kcptest

import (
	"context"
	"testing"
	"time"

	"github.com/apeirora/apeiro-cmk/internal/testpeers"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpserver"
)

// Start starts kcp from $KCP_BIN in a temporary directory; it is stopped when the test ends.
func Start(t testing.TB) *kcpserver.Server {
	t.Helper()
	bin := testpeers.Env(t, "KCP_BIN", "run `make kcp-bin` and export KCP_BIN=$(bash hack/peers/build-kcp.sh)")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s, err := kcpserver.Start(ctx, bin, t.TempDir(), 3*time.Minute)
	if err != nil {
		t.Fatalf("starting kcp: %v", err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	t.Logf("kcp ready after %s", s.StartupTime.Round(time.Millisecond))
	return s
}

// MeshConfig is the fixture's Platform Mesh configuration.
const MeshConfig = kcpserver.MeshConfig

// World is the standard fixture (kcpserver.World).
type World = kcpserver.World

// NewWorld provisions the fixture.
func NewWorld(t testing.TB, s *kcpserver.Server) *World {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	w, err := kcpserver.Provision(ctx, s)
	if err != nil {
		t.Fatalf("provisioning the kcp fixture: %v", err)
	}
	return w
}
