// Package chart tests the Helm chart in deploy/chart/apeiro-cmk against the kustomize installation in deploy/: the
// chart renders the same objects as the overlays (lockstep), its CRDs are deploy/base's, `helm lint` passes and the
// values schema refuses bad values naming the field. Install, upgrade and uninstall against a real API server are in
// test/e2e/helm_test.go.
//
// The peers are the Helm CLI (HELM_BIN, `make helm-bin`) and kubectl's built-in kustomize (KUBE_BIN, `make kube-bin`).
package chart

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	"github.com/apeirora/apeiro-cmk/internal/testpeers"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
)

const (
	chartRel  = "apeiro-cmk"
	namespace = "apeiro-cmk-system"
)

// helmBin returns the helm binary of HELM_BIN (a directory, as every *_BIN peer variable).
func helmBin(t *testing.T) string {
	t.Helper()
	return filepath.Join(testpeers.Env(t, "HELM_BIN", "run `make helm-bin` and set HELM_BIN=$(bash hack/peers/build-helm.sh)"), "helm")
}

func kubectlBin(t *testing.T) string {
	t.Helper()
	return filepath.Join(testpeers.Env(t, "KUBE_BIN", "run `make kube-bin` and set KUBE_BIN=$(bash hack/peers/build-kube.sh)"), "kubectl")
}

func run(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// No repositories, plugins or caches of the developer's own helm configuration.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// helmTemplate renders chartDir with the given extra flags into objects keyed by kind/namespace/name.
func helmTemplate(t *testing.T, chartDir string, flags ...string) map[string]map[string]any {
	t.Helper()
	out, err := run(t, helmBin(t), append([]string{"template", "apeiro-cmk", chartDir, "-n", namespace}, flags...)...)
	if err != nil {
		t.Fatal(err)
	}
	return parseObjects(t, out)
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

func parseObjects(t *testing.T, stream string) map[string]map[string]any {
	t.Helper()
	objs := map[string]map[string]any{}
	for _, doc := range docSep.Split(stream, -1) {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("parsing rendered YAML: %v\n%s", err, doc)
		}
		if obj == nil {
			continue
		}
		key := objKey(obj)
		if _, dup := objs[key]; dup {
			t.Fatalf("%s rendered twice", key)
		}
		objs[key] = obj
	}
	return objs
}

func objKey(obj map[string]any) string {
	meta, _ := obj["metadata"].(map[string]any)
	ns, _ := meta["namespace"].(string)
	if clusterScoped[fmt.Sprint(obj["kind"])] {
		// kustomize's namespace transformer also stamps the namespace on kinds it does not know to be
		// cluster-scoped (ValidatingAdmissionPolicy and its binding); the API server ignores it there.
		ns = ""
	}
	return fmt.Sprintf("%v/%s/%v", obj["kind"], ns, meta["name"])
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}

// The documented differences between `helm template` (default values) and `kubectl kustomize` of the overlay with
// the same certificate path; docs/install.md ("Helm chart and kustomize: what differs") lists them for operators.
var (
	// Labels only one of the tools adds (its own bookkeeping): ignored on every object.
	toolLabels = []string{"app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version", "helm.sh/chart"}
	// Annotations only the chart sets: the CRDs' uninstall protection.
	chartAnnotations = []string{"helm.sh/resource-policy"}
	// Objects only kustomize renders: the namespace (Helm's release namespace exists before the release: `helm
	// install --create-namespace`; docs/install.md labels it for Pod Security Admission).
	kustomizeOnly = map[string]bool{"Namespace//" + namespace: true}
	// Cluster-scoped kinds: metadata.namespace is meaningless there and ignored.
	clusterScoped = map[string]bool{"Namespace": true, "CustomResourceDefinition": true, "ClusterRole": true, "ClusterRoleBinding": true,
		"ValidatingWebhookConfiguration": true, "MutatingWebhookConfiguration": true, "ValidatingAdmissionPolicy": true,
		"ValidatingAdmissionPolicyBinding": true}
)

// normalize removes the documented differences from one object in place.
func normalize(obj map[string]any) {
	meta, _ := obj["metadata"].(map[string]any)
	if clusterScoped[fmt.Sprint(obj["kind"])] {
		delete(meta, "namespace")
	}
	normalizeStrings(obj)
	for _, field := range []string{"labels", "annotations"} {
		m, _ := meta[field].(map[string]any)
		drop := toolLabels
		if field == "annotations" {
			drop = chartAnnotations
		}
		for _, k := range drop {
			delete(m, k)
		}
		if m != nil && len(m) == 0 {
			delete(meta, field)
		}
	}
	// The image reference: kustomize's `images:` and the chart's image.* values set it per installation.
	if obj["kind"] == "Deployment" {
		spec, _ := obj["spec"].(map[string]any)
		tmpl, _ := spec["template"].(map[string]any)
		pod, _ := tmpl["spec"].(map[string]any)
		containers, _ := pod["containers"].([]any)
		for _, c := range containers {
			if cm, ok := c.(map[string]any); ok {
				delete(cm, "image")
			}
		}
	}
}

// normalizeStrings rewrites strings whose layout carries no meaning: base64 (caBundle, Secret data), which kustomize
// wraps at 76 columns, and CEL expressions, which kustomize re-folds with extra blank lines.
func normalizeStrings(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok {
				switch k {
				case "caBundle", "tls.crt", "tls.key", "ca.crt":
					x[k] = strings.Join(strings.Fields(s), "")
				case "expression", "messageExpression":
					x[k] = strings.Join(strings.Fields(s), " ")
				}
				continue
			}
			normalizeStrings(val)
		}
	case []any:
		for _, val := range x {
			normalizeStrings(val)
		}
	}
}

// compare returns one line per difference between the chart's and kustomize's objects (empty: lockstep holds).
func compare(chart, kust map[string]map[string]any) []string {
	var diffs []string
	for _, k := range unionKeys(chart, kust) {
		c, inChart := chart[k]
		s, inKust := kust[k]
		switch {
		case !inChart && kustomizeOnly[k]:
		case !inChart:
			diffs = append(diffs, k+": rendered by kustomize only")
		case !inKust:
			diffs = append(diffs, k+": rendered by the chart only")
		default:
			normalize(c)
			normalize(s)
			diffs = append(diffs, diffValues(k, c, s)...)
		}
	}
	return diffs
}

// unionKeys is the keys of a and b, sorted, so differences are reported in a stable order.
func unionKeys[V any](a, b map[string]V) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// diffValues lists the paths at which a (chart) and b (kustomize) differ.
func diffValues(path string, a, b any) []string {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		var out []string
		for _, k := range unionKeys(av, bv) {
			out = append(out, diffValues(path+"."+k, av[k], bv[k])...)
		}
		return out
	case []any:
		bv, ok := b.([]any)
		if !ok {
			break
		}
		var out []string
		for i := 0; i < len(av) || i < len(bv); i++ {
			var x, y any
			if i < len(av) {
				x = av[i]
			}
			if i < len(bv) {
				y = bv[i]
			}
			out = append(out, diffValues(fmt.Sprintf("%s[%d]", path, i), x, y)...)
		}
		return out
	}
	if reflect.DeepEqual(a, b) {
		return nil
	}
	return []string{fmt.Sprintf("%s: chart %s, kustomize %s", path, short(a), short(b))}
}

func short(v any) string {
	if v == nil {
		return "<absent>"
	}
	b, _ := yaml.Marshal(v)
	s := strings.TrimSpace(string(b))
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return strings.ReplaceAll(s, "\n", " ")
}

// kustomize renders deploy/overlays/<overlay> of a copy of deploy/ (with a throw-away static-certs pair).
func kustomize(t *testing.T, deployCopy, overlay string) map[string]map[string]any {
	t.Helper()
	out, err := run(t, kubectlBin(t), "kustomize", filepath.Join(deployCopy, "overlays", overlay))
	if err != nil {
		t.Fatal(err)
	}
	return parseObjects(t, out)
}

// staticFlags are the helm flags of certificates.mode=static with the given PEM files.
func staticFlags(ca, crt, key string) []string {
	return []string{"--set", "certificates.mode=static", "--set-file", "certificates.static.caCrt=" + ca,
		"--set-file", "certificates.static.tlsCrt=" + crt, "--set-file", "certificates.static.tlsKey=" + key}
}

// staticCerts writes ca.crt, tls.crt and tls.key into dir.
func staticCerts(t *testing.T, dir string) (ca, crt, key string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c, err := controlplane.NewCA("apeiro-cmk-chart-test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := c.IssueServing("apeiro-cmk-webhook."+namespace+".svc", nil, []string{"apeiro-cmk-webhook." + namespace + ".svc"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, crt, key = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := kp.WriteFiles(crt, key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, c.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return ca, crt, key
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLockstepWithKustomize: for each certificate path, the chart with default values renders exactly the objects
// of the matching kustomize overlay (deploy/base + certificates), modulo the documented differences above; so do the
// chart's switches for the optional components (deploy/components) and the overlay that adds them. A change to
// deploy/base, an overlay, a component or the chart alone fails here.
func TestLockstepWithKustomize(t *testing.T) {
	root := repoRoot(t)
	deploy := filepath.Join(t.TempDir(), "deploy")
	copyTree(t, filepath.Join(root, "deploy"), deploy)
	ca, crt, key := staticCerts(t, filepath.Join(deploy, "overlays", "static-certs", "tls"))
	chartDir := filepath.Join(root, "deploy", "chart", chartRel)

	// The optional components on top of the cert-manager overlay, as an operator would combine them.
	components := filepath.Join(deploy, "overlays", "components-lockstep")
	if err := os.MkdirAll(components, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(components, "kustomization.yaml"), []byte(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../cert-manager]
components: [../../components/openkcm-tenant, ../../components/client-cert-verification]
`), 0o644); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		overlay string
		flags   []string
	}{
		{"cert-manager", nil}, // the chart's default
		{"components-lockstep", []string{"--set", "webhook.openkcmTenant=true", "--set", "webhook.clientCAConfigMap=apeiro-cmk-apiserver-client-ca"}},
		{"static-certs", staticFlags(ca, crt, key)},
	}
	for _, tc := range cases {
		t.Run(tc.overlay, func(t *testing.T) {
			chart := helmTemplate(t, chartDir, tc.flags...)
			kust := kustomize(t, deploy, tc.overlay)
			if len(kust) < 20 {
				t.Fatalf("kustomize rendered only %d objects", len(kust))
			}
			if diffs := compare(chart, kust); len(diffs) > 0 {
				t.Errorf("the chart and deploy/overlays/%s differ (change both sides, or list a deliberate difference in "+
					"deploy/chart/chart_test.go and docs/install.md):\n  %s", tc.overlay, strings.Join(diffs, "\n  "))
			}
		})
	}
}

// TestLockstepDetectsDrift proves the comparison is not vacuous: a chart whose default differs from deploy/base in one
// field is reported, with the field's path.
func TestLockstepDetectsDrift(t *testing.T) {
	root := repoRoot(t)
	deploy := filepath.Join(t.TempDir(), "deploy")
	copyTree(t, filepath.Join(root, "deploy"), deploy)
	values := filepath.Join(deploy, "chart", chartRel, "values.yaml")
	b, err := os.ReadFile(values)
	if err != nil {
		t.Fatal(err)
	}
	drifted := bytes.Replace(b, []byte("\nreplicas: 3\n"), []byte("\nreplicas: 2\n"), 1)
	if bytes.Equal(b, drifted) {
		t.Fatal("values.yaml has no `replicas: 3` line to change")
	}
	if err := os.WriteFile(values, drifted, 0o644); err != nil {
		t.Fatal(err)
	}
	diffs := compare(helmTemplate(t, filepath.Join(deploy, "chart", chartRel)), kustomize(t, deploy, "cert-manager"))
	want := "Deployment/" + namespace + "/apeiro-cmk-webhook.spec.replicas: chart 2, kustomize 3"
	if len(diffs) != 1 || diffs[0] != want {
		t.Fatalf("diffs = %q, want exactly %q", diffs, want)
	}
}

// TestCRDsAreDeployBase: the chart's CRDs are byte-for-byte deploy/base/crds (`make chart-crds` copies them).
func TestCRDsAreDeployBase(t *testing.T) {
	root := repoRoot(t)
	base, _ := filepath.Glob(filepath.Join(root, "deploy", "base", "crds", "*.yaml"))
	chart, _ := filepath.Glob(filepath.Join(root, "deploy", "chart", chartRel, "files", "crds", "*.yaml"))
	if len(base) == 0 {
		t.Fatal("no deploy/base/crds/*.yaml")
	}
	names := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			out = append(out, filepath.Base(p))
		}
		return out
	}
	if !reflect.DeepEqual(names(base), names(chart)) {
		t.Fatalf("CRD files differ: deploy/base/crds %v, chart files/crds %v; run `make chart-crds`", names(base), names(chart))
	}
	for _, p := range base {
		want, _ := os.ReadFile(p)
		got, _ := os.ReadFile(filepath.Join(root, "deploy", "chart", chartRel, "files", "crds", filepath.Base(p)))
		if !bytes.Equal(want, got) {
			t.Errorf("deploy/chart/%s/files/crds/%s differs from deploy/base/crds; run `make chart-crds`", chartRel, filepath.Base(p))
		}
	}
}

// TestHelmLint: `helm lint --strict` (which also validates the default values against values.schema.json), for the
// defaults and for the other supported shapes.
func TestHelmLint(t *testing.T) {
	root := repoRoot(t)
	chartDir := filepath.Join(root, "deploy", "chart", chartRel)
	ca, crt, key := staticCerts(t, t.TempDir())
	for name, flags := range map[string][]string{
		"defaults": nil,
		"static":   staticFlags(ca, crt, key),
		"external": {"-f", filepath.Join(chartDir, "profiles", "external.yaml")},
		"kcp":      {"--set", "mode=kcp", "--set", "kcp.kubeconfigSecret=kcp-kubeconfig"},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := run(t, helmBin(t), append([]string{"lint", "--strict", chartDir}, flags...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// TestSchemaRefusesBadValues: each bad value is refused before anything is rendered, and the error names the field.
func TestSchemaRefusesBadValues(t *testing.T) {
	chartDir := filepath.Join(repoRoot(t), "deploy", "chart", chartRel)
	cases := []struct {
		name  string
		flags []string
		field string // the field named in the error
	}{
		{"replicas zero", []string{"--set", "replicas=0"}, "/replicas"},
		{"replicas not a number", []string{"--set", "replicas=three"}, "/replicas"},
		{"unknown top-level key (typo)", []string{"--set", "replica=3"}, "replica"},
		{"unknown nested key", []string{"--set", "webhook.maxdepth=3"}, "maxdepth"},
		{"mode", []string{"--set", "mode=openshift"}, "/mode"},
		{"kcp without kubeconfig", []string{"--set", "mode=kcp"}, "/kcp/kubeconfigSecret"},
		{"certificate mode", []string{"--set", "certificates.mode=letsencrypt"}, "/certificates/mode"},
		{"static without CA", []string{"--set", "certificates.mode=static"}, "/certificates/static/caCrt"},
		{"static CA not PEM", []string{"--set", "certificates.mode=static", "--set", "certificates.static.caCrt=hello"}, "/certificates/static/caCrt"},
		{"memory not a quantity", []string{"--set", "resources.limits.memory=lots"}, "/resources/limits/memory"},
		{"image digest", []string{"--set", "image.digest=md5:abc"}, "/image/digest"},
		{"image repository with spaces", []string{"--set", "image.repository=evil repo"}, "/image/repository"},
		{"pull policy", []string{"--set", "image.pullPolicy=Sometimes"}, "/image/pullPolicy"},
		{"max depth", []string{"--set", "webhook.maxDepth=0"}, "/webhook/maxDepth"},
		{"region source", []string{"--set", "webhook.regionSource=dns"}, "/webhook/regionSource"},
		{"webhook url http", []string{"--set", "webhook.url=http://10.0.0.1:9443"}, "/webhook/url"},
		{"webhook url with path", []string{"--set", "webhook.url=https://hook.example/x"}, "/webhook/url"},
		{"extra arg not a flag", []string{"--set", "webhook.extraArgs[0]=rm -rf /"}, "/webhook/extraArgs/0"},
		{"platform admin group breaks out of CEL", []string{"--set-string", "tenantPermissions.platformAdminGroup=x' || true || 'y"}, "/tenantPermissions/platformAdminGroup"},
		{"bypass group with comma", []string{"--set-string", `tenantPermissions.bypassGroups[0]=a\,system:authenticated`}, "/tenantPermissions/bypassGroups/0"},
		{"bypass user empty", []string{"--set-string", "tenantPermissions.bypassUsers[0]="}, "/tenantPermissions/bypassUsers/0"},
		{"plugin mode", []string{"--set", "plugins.mode=remote"}, "/plugins/mode"},
		{"external without profile", []string{"--set", "plugins.mode=external"}, "/plugins/profile"},
		{"plugin type", []string{"--set", "plugins.profile[0].name=LOCAL", "--set", "plugins.profile[0].type=Keystore"}, "/plugins/profile/0/type"},
		{"plugin binary path traversal", []string{"--set", "plugins.mode=external", "--set", "plugins.profile[0].name=LOCAL", "--set", "plugins.profile[0].type=KeystoreProvider", "--set", "plugins.profile[0].binary=../../bin/sh"}, "/plugins/profile/0/binary"},
		{"keystore plugins", []string{"--set", "plugins.keystorePlugins=aws"}, "/plugins/keystorePlugins"},
		{"network policy switch", []string{"--set-string", "networkPolicy.enabled=yes"}, "/networkPolicy/enabled"},
		{"pod CIDR", []string{"--set", "networkPolicy.podCIDRs.ipv4[0]=10.244.0.0"}, "/networkPolicy/podCIDRs/ipv4/0"},
		{"crds switch", []string{"--set-string", "crds.keepOnUninstall=no"}, "/crds/keepOnUninstall"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, helmBin(t), append([]string{"template", "apeiro-cmk", chartDir, "-n", namespace}, tc.flags...)...)
			if err == nil {
				t.Fatalf("accepted; rendered %d bytes", len(out))
			}
			msg := err.Error()
			if !strings.Contains(msg, "values don't meet the specifications of the schema") {
				t.Fatalf("refused, but not by the schema: %v", err)
			}
			if !strings.Contains(msg, tc.field) {
				t.Fatalf("the error does not name %q: %v", tc.field, err)
			}
		})
	}
}

// TestRenderedShapes checks what each mode adds or removes, beyond the defaults the lockstep test covers.
func TestRenderedShapes(t *testing.T) {
	root := repoRoot(t)
	chartDir := filepath.Join(root, "deploy", "chart", chartRel)
	deployment := func(objs map[string]map[string]any) (args []string, pod map[string]any) {
		d := objs["Deployment/"+namespace+"/apeiro-cmk-webhook"]
		if d == nil {
			t.Fatal("no Deployment rendered")
		}
		pod = d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
		for _, a := range pod["containers"].([]any)[0].(map[string]any)["args"].([]any) {
			args = append(args, a.(string))
		}
		return args, pod
	}
	has := func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	}

	t.Run("external profile", func(t *testing.T) {
		objs := helmTemplate(t, chartDir, "-f", filepath.Join(chartDir, "profiles", "external.yaml"))
		args, _ := deployment(objs)
		if !has(args, "--profile=/etc/apeiro-cmk/profile/config.yaml") {
			t.Errorf("no --profile flag: %q", args)
		}
		cm := objs["ConfigMap/"+namespace+"/apeiro-cmk-webhook-profile"]
		if cm == nil {
			t.Fatal("no profile ConfigMap")
		}
		var profile struct {
			Plugins []struct{ Name, Type, Path string }
		}
		if err := yaml.Unmarshal([]byte(cm["data"].(map[string]any)["config.yaml"].(string)), &profile); err != nil {
			t.Fatal(err)
		}
		if len(profile.Plugins) == 0 {
			t.Fatal("empty profile")
		}
		for _, p := range profile.Plugins {
			if !strings.HasPrefix(p.Path, "/plugins/") {
				t.Errorf("%s/%s: path %q is not under /plugins/", p.Name, p.Type, p.Path)
			}
		}
	})
	t.Run("kcp", func(t *testing.T) {
		objs := helmTemplate(t, chartDir, "--set", "mode=kcp", "--set", "kcp.kubeconfigSecret=kcp-kubeconfig", "--set", "kcp.context=shard-base")
		args, _ := deployment(objs)
		for _, want := range []string{"--kcp-kubeconfig=/etc/apeiro-cmk/kcp/kubeconfig", "--kcp-context=shard-base"} {
			if !has(args, want) {
				t.Errorf("missing %s in %q", want, args)
			}
		}
		for k := range objs {
			for _, kind := range []string{"CustomResourceDefinition/", "ValidatingWebhookConfiguration/", "MutatingWebhookConfiguration/", "ValidatingAdmissionPolicy/"} {
				if strings.HasPrefix(k, kind) {
					t.Errorf("kcp mode rendered %s (belongs into kcp, not the hosting cluster)", k)
				}
			}
		}
	})
	t.Run("out-of-cluster url and options", func(t *testing.T) {
		ca, _, _ := staticCerts(t, t.TempDir())
		objs := helmTemplate(t, chartDir, "--set", "certificates.mode=static", "--set-file", "certificates.static.caCrt="+ca,
			"--set", "webhook.url=https://127.0.0.1:9443", "--set", "networkPolicy.enabled=false", "--set", "webhook.openkcmTenant=true",
			"--set", "webhook.clientCAConfigMap=apiserver-client-ca", "--set", "replicas=1", "--set", "crds.keepOnUninstall=false")
		if _, ok := objs["Secret/"+namespace+"/apeiro-cmk-webhook-tls"]; ok {
			t.Error("a Secret was rendered without tlsCrt/tlsKey (the Secret is expected to exist)")
		}
		if _, ok := objs["NetworkPolicy/"+namespace+"/apeiro-cmk-webhook"]; ok {
			t.Error("NetworkPolicy rendered although disabled")
		}
		vwc := objs["ValidatingWebhookConfiguration//apeiro-cmk-webhook"]
		hooks := vwc["webhooks"].([]any)
		last := hooks[len(hooks)-1].(map[string]any)
		if last["name"] != "vtenant.operations.openkcm.io" {
			t.Errorf("last validating webhook is %v, want the OpenKCM Tenant entry", last["name"])
		}
		for _, h := range hooks {
			cc := h.(map[string]any)["clientConfig"].(map[string]any)
			if u, _ := cc["url"].(string); !strings.HasPrefix(u, "https://127.0.0.1:9443/") || cc["service"] != nil || cc["caBundle"] == nil {
				t.Errorf("webhook %v: clientConfig %v", h.(map[string]any)["name"], cc)
			}
		}
		args, _ := deployment(objs)
		if !has(args, "--client-ca-file=/etc/apeiro-cmk/client-ca/ca.crt") {
			t.Errorf("no --client-ca-file: %q", args)
		}
		crd := objs["CustomResourceDefinition//tenants.cmk.apeiro.io"]
		if ann, _ := crd["metadata"].(map[string]any)["annotations"].(map[string]any); ann["helm.sh/resource-policy"] != nil {
			t.Error("crds.keepOnUninstall=false still renders helm.sh/resource-policy: keep")
		}
	})
}

// TestExternalProfileMatchesRepositoryProfile: profiles/external.yaml (values for plugins.mode=external) is the
// apeiro-profile of profiles/apeiro-profile/config.external.yaml: same entries, configuration, args and tags, with
// each binary taken from the same file name under /plugins.
func TestExternalProfileMatchesRepositoryProfile(t *testing.T) {
	root := repoRoot(t)
	type entry struct {
		Name, Type, Path, Binary string
		Args, Tags               []string
		YAMLConfiguration        string `json:"yamlConfiguration"`
	}
	var repo struct{ Plugins []entry }
	var values struct {
		Plugins struct {
			Mode, Dir string
			Profile   []entry
		}
	}
	read := func(p string, into any) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, into); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	read(filepath.Join(root, "profiles", "apeiro-profile", "config.external.yaml"), &repo)
	read(filepath.Join(root, "deploy", "chart", chartRel, "profiles", "external.yaml"), &values)
	if values.Plugins.Mode != "external" || values.Plugins.Dir != "/plugins" {
		t.Errorf("plugins.mode %q, plugins.dir %q; want external, /plugins", values.Plugins.Mode, values.Plugins.Dir)
	}
	if len(repo.Plugins) != len(values.Plugins.Profile) {
		t.Fatalf("config.external.yaml has %d entries, profiles/external.yaml %d", len(repo.Plugins), len(values.Plugins.Profile))
	}
	for i, want := range repo.Plugins {
		got := values.Plugins.Profile[i]
		want.Binary, want.Path = filepath.Base(want.Path), ""
		if !reflect.DeepEqual(got, want) {
			t.Errorf("entry %d (%s/%s): chart %+v\nrepository profile %+v", i, want.Name, want.Type, got, want)
		}
	}
}

// TestRenderedProfileLoads: the profile the chart renders into its ConfigMap is what the webhook loads (the same
// parser, host.ParseProfile), and equals the repository's apeiro-profile: in external mode
// config.external.yaml with every binary under /plugins, in builtin mode config.yaml.
func TestRenderedProfileLoads(t *testing.T) {
	root := repoRoot(t)
	chartDir := filepath.Join(root, "deploy", "chart", chartRel)
	load := func(t *testing.T, path string) []catalog.PluginConfig {
		t.Helper()
		cfgs, err := host.LoadProfile(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfgs
	}
	rendered := func(t *testing.T, flags ...string) []catalog.PluginConfig {
		t.Helper()
		objs := helmTemplate(t, chartDir, append([]string{"-f", filepath.Join(chartDir, "profiles", "external.yaml")}, flags...)...)
		cm := objs["ConfigMap/"+namespace+"/apeiro-cmk-webhook-profile"]
		if cm == nil {
			t.Fatal("no profile ConfigMap rendered")
		}
		cfgs, err := host.ParseProfile([]byte(cm["data"].(map[string]any)["config.yaml"].(string)))
		if err != nil {
			t.Fatalf("the webhook would refuse the rendered profile: %v", err)
		}
		return cfgs
	}
	for _, tc := range []struct {
		mode    string
		profile string // under profiles/apeiro-profile
		flags   []string
		binDir  string // "": paths as in the profile; else every binary is expected under this directory
	}{
		{mode: "external", profile: "config.external.yaml", binDir: "/plugins"},
		{mode: "builtin", profile: "config.yaml", flags: []string{"--set", "plugins.mode=builtin"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			want := load(t, filepath.Join(root, "profiles", "apeiro-profile", tc.profile))
			for i := range want {
				if tc.binDir != "" {
					want[i].Path = tc.binDir + "/" + filepath.Base(want[i].Path)
				}
			}
			if got := rendered(t, tc.flags...); !reflect.DeepEqual(got, want) {
				t.Errorf("rendered %s profile differs from %s:\n got %+v\nwant %+v", tc.mode, tc.profile, got, want)
			}
		})
	}
}
