package main

// `make run KEYSTORES=openbao,thales`: start the real keystore peers next to the dev stack, give the example
// Accounts (examples/run-openbao.yaml, examples/run-thales.yaml) keys to point at, and restart the webhook with
// the profile's keystore environment, so those Accounts become Ready.
//
//   - openbao: the Vault-API-compatible transit test peer (hack/peers/build-vault.sh; BUSL-1.1, local use only) as a
//     dev server, Kubernetes auth checked by this stack's kube-apiserver (TokenReview) for a ServiceAccount token,
//     the platform role apeiro-cmk and the per-tenant role apeiro-cmk-acme-eu, tenant mount transit/acme-eu with the
//     key acme-eu-transit.
//   - thales: a SoftHSM2 token labelled "acme" (Debian softhsm2) in .dev/stack/softhsm, with the AES-256 key acme-l1
//     of tenant acme generated inside it.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/internal/devstack"
	"github.com/apeirora/apeiro-cmk/internal/testpeers/vault"
	cmkv1alpha1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/openbao"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/thales"
)

var (
	keystoresFlag = flag.String("keystores", os.Getenv("KEYSTORES"), "keystore peers to start on demand: openbao, thales (comma separated)")
	vaultBinFlag  = flag.String("vault-bin", os.Getenv("VAULT_BIN"), "directory holding the vault test peer binary (hack/peers/build-vault.sh prints it); needed for openbao")
)

// What the example Accounts name.
const (
	baoTenant    = "acme-eu"
	baoKey       = "acme-eu-transit"
	baoRole      = "apeiro-cmk-" + baoTenant
	hsmTenant    = "acme"
	hsmToken     = "acme"
	hsmKeyLabel  = "acme-l1"
	softhsmLib   = "/usr/lib/softhsm/libsofthsm2.so"
	devSANs      = "default"
	devSAName    = "apeiro-cmk-openbao"
	keystoreWait = 3 * time.Minute
)

// startKeystores starts the peers named by --keystores and restarts the webhook with their environment. It returns
// what to print and a stop function (always non-nil).
func startKeystores(ctx context.Context, s *devstack.Stack, workDir, kubeconfig string) (string, func(), error) {
	stop := func() {}
	want := map[string]bool{}
	for _, k := range strings.Split(*keystoresFlag, ",") {
		if k = strings.ToLower(strings.TrimSpace(k)); k != "" {
			if k != "openbao" && k != "thales" {
				return "", stop, fmt.Errorf("--keystores: unknown keystore %q (openbao, thales)", k)
			}
			want[k] = true
		}
	}
	if len(want) == 0 {
		return "", stop, nil
	}
	ctx, cancel := context.WithTimeout(ctx, keystoreWait)
	defer cancel()
	var env []string
	var notes strings.Builder
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	if want["openbao"] {
		e, note, st, err := startOpenBao(ctx, s, workDir, kubeconfig)
		if st != nil {
			stops = append(stops, st)
		}
		if err != nil {
			return "", stop, fmt.Errorf("openbao: %w", err)
		}
		env = append(env, e...)
		notes.WriteString(note)
	}
	if want["thales"] {
		e, note, err := startSoftHSM(ctx, workDir)
		if err != nil {
			return "", stop, fmt.Errorf("thales: %w", err)
		}
		env = append(env, e...)
		notes.WriteString(note)
	}
	fmt.Println("devstack: restarting the webhook with the keystore environment")
	if err := s.RestartWebhook(ctx, nil, env); err != nil {
		return "", stop, err
	}
	return notes.String(), stop, nil
}

func startOpenBao(ctx context.Context, s *devstack.Stack, workDir, kubeconfig string) ([]string, string, func(), error) {
	if *vaultBinFlag == "" {
		return nil, "", nil, errors.New("--vault-bin is required (make run sets it: VAULT_BIN=$(bash hack/peers/build-vault.sh))")
	}
	dir := filepath.Join(workDir, "openbao")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", nil, err
	}
	srv, err := vault.StartDev(filepath.Join(*vaultBinFlag, "vault"), dir)
	if err != nil {
		return nil, "", nil, fmt.Errorf("starting the vault test peer: %w", err)
	}
	fmt.Printf("devstack: OpenBao-compatible transit server (Vault test peer) at %s\n", srv.Addr)

	// The platform identity: a ServiceAccount of this API server; its token stands for a pod's projected token.
	kubectl := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, s.Kubectl(), append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := kubectl("-n", devSANs, "create", "serviceaccount", devSAName); err != nil && !strings.Contains(out, "AlreadyExists") {
		return nil, "", srv.Stop, fmt.Errorf("service account: %v: %s", err, out)
	}
	tok, err := kubectl("-n", devSANs, "create", "token", devSAName, "--duration=24h")
	if err != nil {
		return nil, "", srv.Stop, fmt.Errorf("service account token: %v: %s", err, tok)
	}
	tokenFile := filepath.Join(dir, "sa-token")
	if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
		return nil, "", srv.Stop, err
	}

	// Operator setup: Kubernetes auth against this API server, the platform role with the plugin policy, and the
	// tenant role whose policy reaches only the tenant's mount.
	root := srv.Root
	cp := s.ControlPlane
	steps := []struct {
		what string
		do   func() error
	}{
		{"plugin policy", func() error { return root.Sys().PutPolicyWithContext(ctx, "apeiro-cmk", vault.PluginPolicy) }},
		{"tenant policy", func() error {
			return root.Sys().PutPolicyWithContext(ctx, baoRole, fmt.Sprintf("path %q { capabilities = [\"create\", \"read\", \"update\", \"list\"] }\npath %q { capabilities = [\"read\"] }\n",
				"transit/"+baoTenant+"/*", "sys/mounts/transit/"+baoTenant))
		}},
		{"kubernetes auth", func() error {
			_, err := root.Logical().WriteWithContext(ctx, "sys/auth/kubernetes", map[string]any{"type": "kubernetes"})
			return err
		}},
		{"kubernetes auth config", func() error {
			_, err := root.Logical().WriteWithContext(ctx, "auth/kubernetes/config", map[string]any{
				"kubernetes_host": cp.URL, "kubernetes_ca_cert": string(cp.CACertPEM), "token_reviewer_jwt": cp.Token})
			return err
		}},
	}
	for _, role := range []string{"apeiro-cmk", baoRole} {
		role := role
		steps = append(steps, struct {
			what string
			do   func() error
		}{"role " + role, func() error {
			_, err := root.Logical().WriteWithContext(ctx, "auth/kubernetes/role/"+role, map[string]any{
				"bound_service_account_names": []string{devSAName}, "bound_service_account_namespaces": []string{devSANs},
				"token_policies": []string{role}, "token_ttl": "1h"})
			return err
		}})
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			return nil, "", srv.Stop, fmt.Errorf("%s: %w", st.what, err)
		}
	}

	// Tenant onboarding through the plugin itself (Kubernetes auth, the real TokenReview).
	yaml := fmt.Sprintf("address: %s\nauth: {method: kubernetes, role: apeiro-cmk, tokenFile: %q}\n", srv.Addr, tokenFile)
	cfg, err := openbao.ParseConfig(yaml)
	if err != nil {
		return nil, "", srv.Stop, err
	}
	if _, err := openbao.NewWrapper(cfg).EnsureMount(ctx, baoTenant); err != nil {
		return nil, "", srv.Stop, fmt.Errorf("tenant mount: %w", err)
	}
	ops := openbao.NewOperations()
	if _, err := ops.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: yaml}); err != nil {
		return nil, "", srv.Stop, err
	}
	values, _ := structpb.NewStruct(map[string]any{"tenant": baoTenant})
	id := baoKey
	if _, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: values}, Id: &id,
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED}); err != nil {
		return nil, "", srv.Stop, fmt.Errorf("tenant key: %w", err)
	}
	env := []string{"APEIRO_OPENBAO_ADDR=" + srv.Addr, "APEIRO_OPENBAO_AUTH=kubernetes", "APEIRO_OPENBAO_ROLE=apeiro-cmk",
		"APEIRO_OPENBAO_TOKEN_FILE=" + tokenFile}
	note := fmt.Sprintf("openbao      %s  transit mount transit/%s, key %s, roles apeiro-cmk + %s (Kubernetes auth), log %s\n"+
		"             root token for poking around: %s (dev only)\n",
		srv.Addr, baoTenant, baoKey, baoRole, srv.LogFile(), srv.RootToken)
	return env, note, srv.Stop, nil
}

func startSoftHSM(ctx context.Context, workDir string) ([]string, string, error) {
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return nil, "", errors.New("softhsm2-util is not installed; run `make softhsm` (Debian package softhsm2)")
	}
	if _, err := os.Stat(softhsmLib); err != nil {
		return nil, "", fmt.Errorf("%s is missing; run `make softhsm`", softhsmLib)
	}
	dir := filepath.Join(workDir, "softhsm")
	tokDir := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokDir, 0o700); err != nil {
		return nil, "", err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokDir)), 0o600); err != nil {
		return nil, "", err
	}
	pin, so := randomHex(8), randomHex(8)
	cmd := exec.CommandContext(ctx, util, "--init-token", "--free", "--label", hsmToken, "--so-pin", so, "--pin", pin)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("softhsm2-util --init-token: %v: %s", err, out)
	}
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o600); err != nil {
		return nil, "", err
	}
	// This process generates the tenant's key inside the token through the plugin, with the configuration the
	// profile's entry expands to. SoftHSM reads SOFTHSM2_CONF when the module is first loaded.
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return nil, "", err
	}
	yaml := fmt.Sprintf("module: %s\ntokens:\n  - label: %s\n    pin: {source: file, file: {path: %q}}\n", softhsmLib, hsmToken, pinFile)
	cfg, err := thales.ParseConfig(yaml)
	if err != nil {
		return nil, "", err
	}
	extra, err := thales.NewWrapper(cfg).AccessData(&cmkv1alpha1.Account{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{cmkv1alpha1.TenantLabel: hsmTenant}}})
	if err != nil {
		return nil, "", err
	}
	ops := thales.NewOperations()
	if _, err := ops.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: yaml}); err != nil {
		return nil, "", err
	}
	values, _ := structpb.NewStruct(map[string]any{"tenant": hsmTenant, thales.FieldAccessKey: extra[thales.FieldAccessKey]})
	id := hsmKeyLabel
	if _, err := ops.CreateKey(ctx, &operationsv1.CreateKeyRequest{Config: &commonv1.KeystoreInstanceConfig{Values: values}, Id: &id,
		Algorithm: operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256, KeyType: operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED}); err != nil {
		return nil, "", fmt.Errorf("generating %s in the token: %w", hsmKeyLabel, err)
	}
	// The profile reads the PIN from APEIRO_THALES_PIN (a reference to the environment, never inline YAML).
	env := []string{"SOFTHSM2_CONF=" + conf, "APEIRO_PKCS11_MODULE=" + softhsmLib, "APEIRO_THALES_TOKEN=" + hsmToken, "APEIRO_THALES_PIN=" + pin}
	note := fmt.Sprintf("thales       SoftHSM2 token %q in %s, AES-256 key %s of tenant %s (PIN file %s)\n", hsmToken, tokDir, hsmKeyLabel, hsmTenant, pinFile)
	return env, note, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// printKeystores prints the running keystores and the example Accounts that use them.
func printKeystores(notes, kubectl string) {
	if notes == "" {
		return
	}
	k := kubectl + " --kubeconfig .dev/kubeconfig"
	var b strings.Builder
	fmt.Fprintf(&b, "=== keystores (make run KEYSTORES=%s) ===\n%s\nTry:\n", *keystoresFlag, notes)
	if strings.Contains(*keystoresFlag, "openbao") {
		fmt.Fprintf(&b, "  %s apply -f examples/run-openbao.yaml   # an openbao Account (Ready once transit answers) and a key it wraps\n", k)
	}
	if strings.Contains(*keystoresFlag, "thales") {
		fmt.Fprintf(&b, "  %s apply -f examples/run-thales.yaml    # a thales Account (Ready once the token answers) and a key it wraps\n", k)
	}
	fmt.Fprintf(&b, "  %s get accounts -A -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name,READY:.status.conditions[0].status,MSG:.status.conditions[0].message\n\n", k)
	fmt.Print(b.String())
}
