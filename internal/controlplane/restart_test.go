package controlplane

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAPIServerRestartGuards: the restart helpers refuse what would leave two API servers on one port or none at
// all. The restart itself runs against the real binaries in test/e2e (TestFaultAPIServerRestart).
func TestAPIServerRestartGuards(t *testing.T) {
	ctx := context.Background()
	never := &ControlPlane{cfg: Config{StopGrace: time.Second, StartTimeout: time.Second}}
	if err := never.StopAPIServer(0); err == nil || !strings.Contains(err.Error(), "no kube-apiserver") {
		t.Errorf("StopAPIServer without one: %v", err)
	}
	if err := never.StartAPIServer(ctx); err == nil || !strings.Contains(err.Error(), "never started") {
		t.Errorf("StartAPIServer without a previous run: %v", err)
	}

	p, err := StartProcess("kube-apiserver", "/bin/sleep", []string{"30"}, filepath.Join(t.TempDir(), "sleep.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(time.Second) })
	running := &ControlPlane{cfg: Config{StopGrace: time.Second, StartTimeout: time.Second}, APIServer: p}
	if err := running.StartAPIServer(ctx); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Errorf("StartAPIServer while one runs: %v", err)
	}
	if err := running.StopAPIServer(0); err != nil {
		t.Fatalf("StopAPIServer: %v", err)
	}
	if exited, _ := p.Exited(); !exited {
		t.Fatal("the process still runs after StopAPIServer")
	}
}
