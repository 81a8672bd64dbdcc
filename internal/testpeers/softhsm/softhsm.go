// Package softhsm starts SoftHSM2 (Debian package softhsm2) as the real PKCS#11 token of the Thales keystore tests.
//
// SoftHSM reads SOFTHSM2_CONF once, when a process first calls C_Initialize, and the PKCS#11 login state is shared
// by every session of a process. So one test binary gets one token directory (created on first use, under a short
// temporary directory, removed by Cleanup) with a fixed set of tokens initialised up front by softhsm2-util as the
// user the tests run as. SOFTHSM2_CONF is set in the process environment, so plugin processes the tests start
// inherit it.
package softhsm

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/apeirora/apeiro-cmk/internal/testpeers"
)

// ModulePath is where Debian's softhsm2 installs the PKCS#11 module.
const ModulePath = "/usr/lib/softhsm/libsofthsm2.so"

// Labels of the tokens every test binary gets. Main is used by most tests; Second is a separate token whose login
// state tests may spoil (wrong PIN) without affecting Main.
const (
	Main   = "apeiro"
	Second = "apeiro-b"
)

// Token is one initialised token.
type Token struct {
	Module  string // PKCS#11 module path
	Label   string // token label
	PIN     string // user PIN (tests only)
	PINFile string // file holding the PIN (0600), as a deployment would mount it
	Conf    string // SOFTHSM2_CONF
}

var (
	mu     sync.Mutex
	dir    string
	tokens map[string]*Token
)

// Start returns the token labelled label (Main or Second), creating the SoftHSM directory on first use. A missing
// softhsm2 installation skips the test locally and fails it in CI.
func Start(t testing.TB, label string) *Token {
	t.Helper()
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		testpeers.Missing(t, "softhsm2-util not found on PATH; run `make softhsm` (bash hack/peers/apt.sh softhsm2)")
	}
	if _, err := os.Stat(ModulePath); err != nil {
		testpeers.Missing(t, ModulePath+" is missing; run `make softhsm` (bash hack/peers/apt.sh softhsm2)")
	}
	mu.Lock()
	defer mu.Unlock()
	if tokens == nil {
		if err := setup(util); err != nil {
			t.Fatalf("softhsm: %v", err)
		}
	}
	tok := tokens[label]
	if tok == nil {
		t.Fatalf("softhsm: no token %q (have %q and %q)", label, Main, Second)
	}
	return tok
}

func setup(util string) error {
	// Short path: the token directory holds one directory per token with UUID names.
	d, err := os.MkdirTemp("", "shsm")
	if err != nil {
		return err
	}
	dir = d
	tokDir := filepath.Join(d, "tokens")
	if err := os.Mkdir(tokDir, 0o700); err != nil {
		return err
	}
	conf := filepath.Join(d, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokDir)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return err
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return err
	}
	tokens = map[string]*Token{}
	for _, label := range []string{Main, Second} {
		pin := randHex(8)
		so := randHex(8)
		cmd := exec.Command(util, "--init-token", "--free", "--label", label, "--so-pin", so, "--pin", pin)
		cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("softhsm2-util --init-token %s: %v: %s", label, err, out)
		}
		pinFile := filepath.Join(d, label+".pin")
		if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o600); err != nil {
			return err
		}
		tokens[label] = &Token{Module: ModulePath, Label: label, PIN: pin, PINFile: pinFile, Conf: conf}
	}
	return nil
}

// Cleanup removes the token directory (call it from TestMain after m.Run, or from the Cleanup of the only test that
// uses SoftHSM in a binary). A later Start creates a new directory, but a PKCS#11 module this process already
// initialised keeps reading the old SOFTHSM2_CONF, so in-process use after Cleanup is not supported.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
	dir, tokens = "", nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
