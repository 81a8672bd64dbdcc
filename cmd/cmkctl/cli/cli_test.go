package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/apeirora/apeiro-cmk/cmd/cmkctl/cli"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/keychain/localwrap"
)

// localSetup writes a profile whose LOCAL keystore lives in a temp dir, creates tenant acme's L1 key there and
// writes an Account manifest for it.
func localSetup(t *testing.T) (profile, account string) {
	t.Helper()
	dir := t.TempDir()
	ks := filepath.Join(dir, "ks")
	profile = filepath.Join(dir, "profile.yaml")
	prof := fmt.Sprintf("plugins:\n  - name: LOCAL\n    type: KeystoreInstanceKeyOperation\n    tags: [default_keystore]\n    yamlConfiguration: |\n      dir: %s\n", ks)
	if err := os.WriteFile(profile, []byte(prof), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := localwrap.New(context.Background(), "dir: "+ks+"\n")
	if err != nil {
		t.Fatal(err)
	}
	c := keychain.NewChain(nil)
	c.Register(cmkv1.KeystoreLocal, w)
	c.SetProvisioning(cmkv1.KeystoreLocal, true)
	a := &cmkv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "main", Labels: map[string]string{cmkv1.TenantLabel: "acme"}},
		Spec: cmkv1.AccountSpec{Keystore: cmkv1.KeystoreLocal, KeyRef: "acme-l1", Region: "eu-central"}}
	if _, err := c.EnsureL1Key(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	account = filepath.Join(dir, "account.yaml")
	manifest := "apiVersion: cmk.apeiro.io/v1alpha1\nkind: Account\nmetadata: {name: main, namespace: acme, labels: {cmk.apeiro.io/tenant: acme}}\nspec: {keystore: local, keyRef: acme-l1, region: eu-central}\n"
	if err := os.WriteFile(account, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	return profile, account
}

func run(args []string, stdin string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestEncryptDecryptWithAccountFile(t *testing.T) {
	profile, account := localSetup(t)
	code, ct, stderr := run([]string{"--profile", profile, "encrypt", "--account-file", account}, "secret payload")
	if code != 0 {
		t.Fatalf("encrypt: exit %d: %s", code, stderr)
	}
	if strings.Contains(ct, "secret payload") {
		t.Fatal("ciphertext contains the payload")
	}
	code, pt, stderr := run([]string{"--profile", profile, "decrypt", "--account-file", account}, ct)
	if code != 0 || pt != "secret payload" {
		t.Fatalf("decrypt: exit %d, %q: %s", code, pt, stderr)
	}
	// Another tenant's Account naming the same key name reaches another instance.
	code, _, stderr = run([]string{"--profile", profile, "decrypt", "--account-file", account, "--tenant", "globex"}, ct)
	if code != 1 || !strings.Contains(stderr, "not found") {
		t.Fatalf("decrypt as globex: exit %d: %s", code, stderr)
	}
}

func TestBadInput(t *testing.T) {
	profile, account := localSetup(t)
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		code  int
		msg   string
	}{
		{"no command", nil, "", 2, ""},
		{"unknown command", []string{"rotate"}, "", 2, "unknown command"},
		{"no target", []string{"encrypt"}, "", 2, "exactly one of"},
		{"two targets", []string{"encrypt", "--key", "a/b", "--account", "a/b"}, "", 2, "exactly one of"},
		{"aad with account", []string{"encrypt", "--account-file", account, "--aad", "x"}, "", 2, "--aad applies to --key only"},
		{"not base64", []string{"--profile", profile, "decrypt", "--account-file", account}, "%%%", 1, "not base64"},
		{"not a ciphertext", []string{"--profile", profile, "decrypt", "--account-file", account}, "aGVsbG8=", 1, "not an L1 ciphertext"},
		{"empty payload", []string{"--profile", profile, "encrypt", "--account-file", account}, "", 1, "1..4096 bytes"},
		{"payload too large for L1", []string{"--profile", profile, "encrypt", "--account-file", account}, strings.Repeat("x", 5000), 1, "use a service encryption key"},
		{"missing manifest", []string{"encrypt", "--account-file", "/nonexistent.yaml"}, "x", 1, "no such file"},
		{"bad key ref", []string{"--kubeconfig", "/nonexistent", "encrypt", "--key", "nonamespace"}, "x", 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(tc.args, tc.stdin)
			if code != tc.code || !strings.Contains(stderr, tc.msg) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tc.code, stderr, tc.msg)
			}
		})
	}
}

func TestManifestWithoutTenant(t *testing.T) {
	profile, _ := localSetup(t)
	f := filepath.Join(t.TempDir(), "a.yaml")
	_ = os.WriteFile(f, []byte("apiVersion: cmk.apeiro.io/v1alpha1\nkind: Account\nmetadata: {name: main}\nspec: {keystore: local, keyRef: k, region: eu}\n"), 0o600)
	if code, _, stderr := run([]string{"--profile", profile, "encrypt", "--account-file", f}, "x"); code != 1 || !strings.Contains(stderr, "--tenant") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	_ = os.WriteFile(f, []byte("kind: Tenant\nspec: {region: eu}\n"), 0o600)
	if code, _, stderr := run([]string{"--profile", profile, "encrypt", "--account-file", f}, "x"); code != 1 {
		t.Fatalf("a Tenant manifest was accepted: exit %d: %s", code, stderr)
	}
}

// FuzzParseAccount: no manifest panics the decoder; what it accepts is an Account naming a keystore and a key.
func FuzzParseAccount(f *testing.F) {
	f.Add([]byte("apiVersion: cmk.apeiro.io/v1alpha1\nkind: Account\nmetadata: {name: main}\nspec: {keystore: aws, keyRef: k, region: eu}\n"))
	f.Add([]byte(`{"kind":"Account","spec":{"keystore":"local","keyRef":"x"}}`))
	f.Add([]byte("kind: [\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := cli.ParseAccount(b)
		if err != nil {
			return
		}
		if a.Kind != "Account" || a.Spec.Keystore == "" || a.Spec.KeyRef == "" {
			t.Fatalf("accepted %q as %+v", b, a)
		}
	})
}
