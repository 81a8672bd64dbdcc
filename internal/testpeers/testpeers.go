// Package testpeers finds the real peers (servers and binaries built or installed by the Makefile) that tests run
// against. A missing peer skips the test on a developer machine and fails it in CI (CI=true) or when
// APEIRO_REQUIRE_PEERS=1, so a green CI run never hides a test that did not run.
package testpeers

import (
	"os"
	"os/exec"
	"testing"
)

// Required reports whether a missing peer must fail the test instead of skipping it.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("APEIRO_REQUIRE_PEERS") == "1"
}

// Missing skips t (or fails it when peers are required) with msg, which should say how to get the peer
// (usually the make target).
func Missing(t testing.TB, msg string) {
	t.Helper()
	if Required() {
		t.Fatalf("required peer missing: %s", msg)
	}
	t.Skipf("peer missing (set CI=true or APEIRO_REQUIRE_PEERS=1 to fail instead): %s", msg)
}

// Env returns the value of the environment variable name, which points at a peer (a binary directory, a
// kubeconfig, …); when it is empty, Missing is called with hint.
func Env(t testing.TB, name, hint string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		Missing(t, name+" is not set; "+hint)
	}
	return v
}

// Command returns the absolute path of an executable on PATH; when it is absent, Missing is called with hint.
func Command(t testing.TB, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" not found on PATH; "+hint)
	}
	return p
}
