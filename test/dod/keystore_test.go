package dod

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/cmd/cmkctl/cli"
	"github.com/apeirora/apeiro-cmk/internal/testpeers/moto"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/aws"
)

// TestDoDKeystore: "the Keystore Plugin successfully encrypts/decrypts a test payload using an AWS KMS key via
// IRSA". moto serves KMS + STS + IAM with signature and policy enforcement; the platform identity is a web-identity
// token (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE, no static key anywhere). The key is created by the
// ApeiroAWSPlugin's operations service, then cmkctl — the user-facing command — encrypts and decrypts the payload
// with it through the key chain: web identity → platform role → the tenant's role (ExternalId = tenant) → KMS.
func TestDoDKeystore(t *testing.T) {
	r := item(t, "keystore")
	srv := moto.Start(t, moto.Options{Tenants: []string{"dod-tenant"}})
	srv.Setenv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	role := srv.TenantRoleARN("dod-tenant")
	cfg, err := structpb.NewStruct(map[string]any{"tenant": "dod-tenant", "roleArn": role, "namespace": "dod-tenant", "region": srv.Region})
	if err != nil {
		t.Fatal(err)
	}
	ops := aws.NewOperations()
	ck, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{
		Config: &commonv1.KeystoreInstanceConfig{Values: cfg}, Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256,
		KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED,
	})
	if err != nil {
		t.Fatalf("CreateKey through the AWS plugin (IRSA): %v", err)
	}
	keyARN := ck.GetKeyId()
	r.Evidence("KMS key %s created by the AWS plugin as role %s", keyARN, role)

	dir := t.TempDir()
	account := filepath.Join(dir, "account.yaml")
	manifest := fmt.Sprintf(`apiVersion: cmk.apeiro.io/v1alpha1
kind: Account
metadata:
  name: main
  namespace: dod-tenant
  labels: {cmk.apeiro.io/tenant: dod-tenant}
spec:
  keystore: aws
  keyRef: %s
  region: %s
  auth: {irsaRoleARN: %q}
`, keyARN, srv.Region, role)
	if err := os.WriteFile(account, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	payload := []byte("Definition of Done: a test payload through AWS KMS via IRSA")
	in := filepath.Join(dir, "payload")
	ct := filepath.Join(dir, "payload.enc")
	back := filepath.Join(dir, "payload.dec")
	if err := os.WriteFile(in, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	cmkctl := func(args ...string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := cli.Run(ctx, args, nil, &stdout, &stderr); code != 0 {
			t.Fatalf("cmkctl %s: exit %d: %s", strings.Join(args, " "), code, stderr.String())
		}
	}
	cmkctl("encrypt", "--account-file", account, "--in", in, "--out", ct)
	enc, _ := os.ReadFile(ct)
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(enc)))
	if err != nil || bytes.Contains(raw, payload) || len(raw) == 0 {
		t.Fatalf("ciphertext %q is not an opaque KMS ciphertext (%v)", enc, err)
	}
	r.Evidence("cmkctl encrypt: %d-byte payload → %d-byte KMS ciphertext", len(payload), len(raw))
	cmkctl("decrypt", "--account-file", account, "--in", ct, "--out", back)
	got, _ := os.ReadFile(back)
	if !bytes.Equal(got, payload) {
		t.Fatalf("cmkctl decrypt returned %q, want %q", got, payload)
	}
	r.Evidence("cmkctl decrypt: round trip equal")

	// The ciphertext is bound to its Account: another tenant's Account naming the same key cannot open it.
	other := filepath.Join(dir, "other.yaml")
	_ = os.WriteFile(other, []byte(strings.ReplaceAll(manifest, "cmk.apeiro.io/tenant: dod-tenant", "cmk.apeiro.io/tenant: intruder")), 0o600)
	var stderr bytes.Buffer
	if code := cli.Run(ctx, []string{"decrypt", "--account-file", other, "--in", ct, "--out", filepath.Join(dir, "x")}, nil, &bytes.Buffer{}, &stderr); code == 0 {
		t.Fatal("another tenant decrypted the payload")
	}
	r.Evidence("another tenant refused (%s)", firstLine(stderr.String()))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 140 { // the reason is at the end of a wrapped error
		s = "..." + s[len(s)-137:]
	}
	return s
}
