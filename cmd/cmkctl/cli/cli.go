// Package cli is cmkctl: encrypt and decrypt a payload with a ServiceEncryptionKey or directly with an Account's L1
// key, through the same key chain (pkg/keychain, backends built from the plugins profile) as the webhook server.
// Against AWS KMS it runs the whole IRSA chain: web identity → platform role → the Account's role (ExternalId =
// tenant) → KMS.
package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/openkcm/plugin-sdk/pkg/catalog"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/keychain/backends"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/profiles"
)

const usage = `cmkctl encrypts and decrypts payloads through the apeiro-cmk key chain.

Usage:
  cmkctl [global flags] encrypt|decrypt (--key NS/NAME | --account NS/NAME | --account-file FILE) [flags]

  --key NS/NAME        a Ready ServiceEncryptionKey (AES256): AES-256-GCM with its material, unwrapped by the
                       Account's L1 key; payloads up to 16 MiB
  --account NS/NAME    an Account: the payload (1..4096 bytes) is encrypted by its L1 key itself
  --account-file FILE  an Account manifest (YAML) instead of one read from the cluster; its tenant comes from the
                       cmk.apeiro.io/tenant label or --tenant
  --in FILE            input (default "-": stdin); --out FILE output (default "-": stdout)
  --aad TEXT           additional authenticated data (--key only); decrypt needs the same

Ciphertexts are written and read as base64 text.

Global flags:
  --kubeconfig FILE    cluster to read keys and Accounts from (default $KUBECONFIG, then in-cluster)
  --profile FILE       plugins profile the keystore backends are configured from (default: the embedded
                       apeiro-profile; its local keystore reads $APEIRO_LOCAL_KEYSTORE_DIR, for "make run"
                       .dev/stack/keystore-local)
  --timeout DURATION   overall budget (default 30s)

AWS KMS is reached through IRSA only: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (AWS_ENDPOINT_URL_STS /
AWS_ENDPOINT_URL_KMS for a local endpoint such as moto). Static AWS keys are refused.
`

// Run runs cmkctl with args and returns the exit code: 0 success, 1 failure, 2 usage error.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cmkctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "")
	profile := fs.String("profile", "", "")
	timeout := fs.Duration("timeout", 30*time.Second, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 || fs.Arg(0) == "help" {
		fmt.Fprint(stdout, usage)
		if fs.NArg() == 0 {
			return 2
		}
		return 0
	}
	cmd := fs.Arg(0)
	if cmd != "encrypt" && cmd != "decrypt" {
		fmt.Fprintf(stderr, "cmkctl: unknown command %q (encrypt, decrypt, help)\n", cmd)
		return 2
	}
	sub := flag.NewFlagSet("cmkctl "+cmd, flag.ContinueOnError)
	sub.SetOutput(stderr)
	sub.Usage = func() { fmt.Fprint(stderr, usage) }
	key := sub.String("key", "", "")
	acct := sub.String("account", "", "")
	acctFile := sub.String("account-file", "", "")
	tenant := sub.String("tenant", "", "")
	in := sub.String("in", "-", "")
	out := sub.String("out", "-", "")
	aad := sub.String("aad", "", "")
	if err := sub.Parse(fs.Args()[1:]); err != nil {
		return 2
	}
	n := 0
	for _, s := range []string{*key, *acct, *acctFile} {
		if s != "" {
			n++
		}
	}
	if n != 1 || sub.NArg() != 0 {
		fmt.Fprintln(stderr, "cmkctl: give exactly one of --key, --account, --account-file (and no positional arguments)")
		return 2
	}
	if *aad != "" && *key == "" {
		fmt.Fprintln(stderr, "cmkctl: --aad applies to --key only (an Account's L1 ciphertext is bound to the Account itself)")
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := run(ctx, runArgs{cmd: cmd, key: *key, account: *acct, accountFile: *acctFile, tenant: *tenant, in: *in, out: *out,
		aad: *aad, kubeconfig: *kubeconfig, profile: *profile, stdin: stdin, stdout: stdout}); err != nil {
		fmt.Fprintf(stderr, "cmkctl %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

type runArgs struct {
	cmd, key, account, accountFile, tenant, in, out, aad, kubeconfig, profile string
	stdin                                                                     io.Reader
	stdout                                                                    io.Writer
}

func run(ctx context.Context, a runArgs) error {
	input, err := readInput(a.in, a.stdin)
	if err != nil {
		return err
	}
	if a.cmd == "decrypt" {
		if input, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(input))); err != nil {
			return fmt.Errorf("input is not base64 ciphertext: %w", err)
		}
	}
	var reader client.Reader
	if a.accountFile == "" {
		if reader, err = kubeClient(a.kubeconfig); err != nil {
			return err
		}
	}
	var fileAccount *cmkv1.Account
	if a.accountFile != "" {
		if fileAccount, err = readAccount(a.accountFile, a.tenant); err != nil {
			return err
		}
	}
	chain, err := buildChain(ctx, reader, a.profile)
	if err != nil {
		return err
	}
	var output []byte
	switch {
	case a.key != "":
		ns, name, err := splitRef("--key", a.key)
		if err != nil {
			return err
		}
		if a.cmd == "encrypt" {
			output, err = chain.Encrypt(ctx, ns, name, input, []byte(a.aad))
		} else {
			output, err = chain.Decrypt(ctx, ns, name, input, []byte(a.aad))
		}
		if err != nil {
			return err
		}
	default:
		acct := fileAccount
		if acct == nil {
			ns, name, err := splitRef("--account", a.account)
			if err != nil {
				return err
			}
			if acct, err = chain.Account(ctx, ns, name); err != nil {
				return err
			}
		}
		if err := ensureWrapper(ctx, chain, acct.Spec.Keystore); err != nil {
			return err
		}
		if a.cmd == "encrypt" {
			output, err = chain.EncryptForAccount(ctx, acct, input)
		} else {
			output, err = chain.DecryptForAccount(ctx, acct, input)
		}
		if err != nil {
			return err
		}
	}
	if a.cmd == "encrypt" {
		output = append([]byte(base64.StdEncoding.EncodeToString(output)), '\n')
	}
	return writeOutput(a.out, a.stdout, output)
}

// buildChain assembles the chain from the profile's keystore plugins, like the webhook server does.
func buildChain(ctx context.Context, r client.Reader, profile string) (*keychain.Chain, error) {
	var (
		entries []catalog.PluginConfig
		err     error
	)
	if profile == "" {
		entries, err = host.ParseProfile(profiles.ApeiroBuiltin)
	} else {
		entries, err = host.LoadProfile(profile)
	}
	if err != nil {
		return nil, fmt.Errorf("reading plugin profile: %w", err)
	}
	chain := keychain.NewChain(r)
	if _, err := backends.Register(ctx, chain, entries, backends.Mapping(entries)); err != nil {
		return nil, err
	}
	return chain, nil
}

// ensureWrapper falls back to a keystore's default configuration when the profile has no entry for it (aws: IRSA
// from the environment).
func ensureWrapper(ctx context.Context, chain *keychain.Chain, ks cmkv1.KeystoreType) error {
	if _, err := chain.Wrapper(ks); err == nil {
		return nil
	}
	w, err := backends.New(ctx, ks, "")
	if err != nil {
		return fmt.Errorf("keystore %q: %w", ks, err)
	}
	chain.Register(ks, w)
	return nil
}

func kubeClient(kubeconfig string) (client.Reader, error) {
	var (
		cfg *rest.Config
		err error
	)
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("cluster configuration (--kubeconfig or KUBECONFIG): %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := cmkv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

// maxManifest bounds an Account manifest.
const maxManifest = 1 << 20

func readAccount(path, tenant string) (*cmkv1.Account, error) {
	b, err := readLimited(path, nil, maxManifest)
	if err != nil {
		return nil, err
	}
	a, err := ParseAccount(b)
	if err != nil {
		return nil, fmt.Errorf("--account-file %s: %w", path, err)
	}
	if tenant != "" {
		if a.Labels == nil {
			a.Labels = map[string]string{}
		}
		a.Labels[cmkv1.TenantLabel] = tenant
	}
	if a.Labels[cmkv1.TenantLabel] == "" {
		return nil, fmt.Errorf("--account-file %s: the Account has no %s label; give --tenant", path, cmkv1.TenantLabel)
	}
	return a, nil
}

// ParseAccount decodes an Account manifest (YAML or JSON, unknown fields refused) and checks it names a keystore
// and a key.
func ParseAccount(b []byte) (*cmkv1.Account, error) {
	if len(b) > maxManifest {
		return nil, fmt.Errorf("manifest of %d bytes exceeds %d", len(b), maxManifest)
	}
	var a cmkv1.Account
	if err := yaml.UnmarshalStrict(b, &a); err != nil {
		return nil, err
	}
	if a.Kind != "Account" || a.Spec.Keystore == "" || a.Spec.KeyRef == "" {
		return nil, errors.New("not an Account manifest with spec.keystore and spec.keyRef")
	}
	return &a, nil
}

func splitRef(flagName, s string) (string, string, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("%s %q: want NAMESPACE/NAME", flagName, s)
	}
	return ns, name, nil
}

func readInput(path string, stdin io.Reader) ([]byte, error) {
	// Base64 of the largest payload plus slack.
	return readLimited(path, stdin, keychain.MaxPayload*4/3+4096)
}

func readLimited(path string, stdin io.Reader, limit int64) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		if stdin == nil {
			return nil, errors.New("no stdin")
		}
		r = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("input exceeds %d bytes", limit)
	}
	return b, nil
}

func writeOutput(path string, stdout io.Writer, b []byte) error {
	if path == "-" {
		_, err := io.Copy(stdout, bytes.NewReader(b))
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
