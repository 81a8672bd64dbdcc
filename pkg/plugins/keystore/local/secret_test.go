package local

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestSecretLocation(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "keys")
	c := &Config{Dir: dir}
	s1, info, err := c.resolveSecret(nil)
	if err != nil || info.source != "dev-file" || info.path != dir+".secret" {
		t.Fatalf("dev default = %v, %+v", err, info)
	}
	if _, err := os.Stat(filepath.Join(dir, legacySecretFile)); !os.IsNotExist(err) {
		t.Fatal("the development secret was written into the key directory")
	}
	s2, _, _ := c.resolveSecret(nil)
	if !bytes.Equal(s1, s2) || len(s1) != 32 {
		t.Fatal("the development secret is not stable")
	}

	// A directory from before keeps its in-directory secret.
	old := filepath.Join(base, "old")
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	legacy := bytes.Repeat([]byte{7}, 32)
	if err := os.WriteFile(filepath.Join(old, legacySecretFile), legacy, 0o600); err != nil {
		t.Fatal(err)
	}
	got, info, err := (&Config{Dir: old}).resolveSecret(nil)
	if err != nil || info.source != "legacy-file" || !bytes.Equal(got, legacy) {
		t.Fatalf("legacy secret = %v, %+v", err, info)
	}

	// A secret file inside the key directory is refused.
	inside := filepath.Join(dir, "mounted.secret")
	if err := os.WriteFile(inside, []byte("a-long-enough-passphrase"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("dir: " + dir + "\nsecret: {source: file, file: {path: " + inside + "}}")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cfg.resolveSecret(nil); err == nil || !strings.Contains(err.Error(), "inside the key directory") {
		t.Fatalf("secret inside dir: %v", err)
	}
}

func TestSecretPassphraseKDF(t *testing.T) {
	t.Setenv("LKS_TEST_PASSPHRASE", "correct horse battery staple")
	fresh := filepath.Join(t.TempDir(), "fresh")
	cfg, err := ParseConfig("dir: " + fresh + "\nsecret: {source: env, env: LKS_TEST_PASSPHRASE}")
	if err != nil {
		t.Fatal(err)
	}
	got, info, err := cfg.resolveSecret(nil)
	if err != nil || info.legacyKDF {
		t.Fatalf("fresh dir: %v %+v", err, info)
	}
	hashed := sha256.Sum256([]byte("correct horse battery staple"))
	if bytes.Equal(got, hashed[:]) {
		t.Fatal("passphrase only hashed, not stretched")
	}
	if _, err := os.Stat(filepath.Join(fresh, kdfMarker)); err != nil {
		t.Fatalf("argon2id marker not written: %v", err)
	}
	again, _, _ := cfg.resolveSecret(nil)
	if !bytes.Equal(got, again) {
		t.Fatal("argon2id derivation is not deterministic")
	}

	// Keys sealed before argon2id stay readable.
	old := filepath.Join(t.TempDir(), "old")
	if err := os.MkdirAll(filepath.Join(old, "instances"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg.Dir = old
	got, info, err = cfg.resolveSecret(nil)
	if err != nil || !info.legacyKDF || !bytes.Equal(got, hashed[:]) {
		t.Fatalf("legacy dir: %v %+v", err, info)
	}
}

// A purge of an expired key by a reader and concurrent updates of the same
// key never resurrect it (run with -race).
func TestPurgeUnderKeyMutex(t *testing.T) {
	o := NewOperations()
	be := o.backend()
	inst := "lks-test"
	access, _ := structpb.NewStruct(map[string]any{FieldInstanceID: inst, FieldAccessKey: AccessKey(be.secret, roleKeys, inst)})
	past := time.Now().Add(-time.Hour)
	r := &keyRecord{ID: "k1", Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256.String(),
		KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED.String(), State: StatePendingDeletion, DeleteAt: &past}
	if err := o.save(be, inst, r, true); err != nil {
		t.Fatal(err)
	}
	p := &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: access}, KeyId: "k1"}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); _, _ = o.GetKey(t.Context(), &operationsv1.GetKeyRequest{Parameters: p}) }()
		go func() {
			defer wg.Done()
			_, _ = o.EnableKey(t.Context(), &operationsv1.EnableKeyRequest{Parameters: p})
		}()
	}
	wg.Wait()
	if _, err := be.st.get(kindKeys, inst, "k1"); err == nil {
		t.Fatal("expired key still stored")
	}
}

// BenchmarkSecretKDF measures the argon2id stretch paid once per Configure.
func BenchmarkSecretKDF(b *testing.B) {
	b.Setenv("LKS_BENCH_PASSPHRASE", "correct horse battery staple")
	cfg, err := ParseConfig("secret: {source: env, env: LKS_BENCH_PASSPHRASE}")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := cfg.resolveSecret(nil); err != nil {
			b.Fatal(err)
		}
	}
}
