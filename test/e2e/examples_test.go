package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/apeirora/apeiro-cmk/internal/devstack"
)

// example is one file of examples/good or examples/bad with its header (see examples/README.md).
type example struct {
	path    string // absolute
	name    string // relative to examples/
	expect  string // admitted | denied
	message string
	tbd     bool // the message is provisional
	rule    string
	by      string // webhook | cel
	objs    []*unstructured.Unstructured
}

// parseExample reads the header comment lines and the objects of an example file.
func parseExample(path, name string) (*example, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ex := &example{path: path, name: name}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "#") {
			break
		}
		body := strings.TrimSpace(strings.TrimPrefix(line, "#"))
		key, val, ok := strings.Cut(body, ":")
		switch {
		case body == "message-tbd":
			ex.tbd = true
		case !ok:
		case key == "expect":
			ex.expect = strings.TrimSpace(val)
		case key == "message":
			ex.message = strings.TrimSpace(val)
		case key == "rule":
			ex.rule = strings.TrimSpace(val)
		case key == "by":
			ex.by = strings.TrimSpace(val)
		}
	}
	switch {
	case ex.expect != "admitted" && ex.expect != "denied":
		return nil, fmt.Errorf("%s: header has no `# expect: admitted|denied` line", name)
	case ex.expect == "denied" && ex.message == "":
		return nil, fmt.Errorf("%s: a denied case needs a `# message:` line", name)
	case ex.by != "" && ex.by != "webhook" && ex.by != "cel":
		return nil, fmt.Errorf("%s: `# by: %s` is neither webhook nor cel", name, ex.by)
	}
	docs, err := devstack.SplitYAML(path)
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(d, &u.Object); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		ex.objs = append(ex.objs, u)
	}
	if len(ex.objs) == 0 {
		return nil, fmt.Errorf("%s: no objects", name)
	}
	return ex, nil
}

// loadExamples returns every example outside 00-world, sorted by path.
func loadExamples(t *testing.T) []*example {
	t.Helper()
	base := filepath.Join(env.root, "examples")
	var files []string
	for _, sub := range []string{"good", "bad"} {
		m, _ := filepath.Glob(filepath.Join(base, sub, "*.yaml"))
		files = append(files, m...)
	}
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatalf("no examples in %s/{good,bad}", base)
	}
	var out []*example
	for _, f := range files {
		rel, _ := filepath.Rel(base, f)
		ex, err := parseExample(f, rel)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ex)
	}
	return out
}

// verdict is what one apply answered.
type verdict struct {
	admitted bool
	output   string
}

// check compares a verdict with the example's header and returns the problems.
func (ex *example) check(v verdict, how string) []string {
	var problems []string
	want := ex.expect == "admitted"
	if v.admitted != want {
		return []string{fmt.Sprintf("%s: expected %s, got %s: %s", how, ex.expect, map[bool]string{true: "admitted", false: "denied"}[v.admitted], v.output)}
	}
	if v.admitted {
		return nil
	}
	if !strings.Contains(v.output, ex.message) {
		msg := fmt.Sprintf("%s: denied, but the output lacks %q: %s", how, ex.message, v.output)
		if ex.tbd {
			msg = "(message-tbd, not failing) " + msg
		}
		problems = append(problems, msg)
	}
	byWebhook := strings.Contains(v.output, "admission webhook")
	switch {
	case ex.by == "webhook" && !byWebhook:
		problems = append(problems, fmt.Sprintf("%s: `by: webhook` but the denial does not come from an admission webhook: %s", how, v.output))
	case ex.by == "cel" && byWebhook:
		problems = append(problems, fmt.Sprintf("%s: `by: cel` but an admission webhook denied it: %s", how, v.output))
	}
	return problems
}

// hardProblems drops the problems that are only reported (provisional messages).
func hardProblems(ps []string) []string {
	var out []string
	for _, p := range ps {
		if !strings.HasPrefix(p, "(message-tbd") {
			out = append(out, p)
		}
	}
	return out
}

// applyExample runs `kubectl apply [--dry-run=server] -f file`, repeating for a few seconds while the verdict does
// not match yet (informer lag in the webhook), and returns the last verdict.
func applyExample(ctx context.Context, ex *example, dryRun bool) (verdict, []string) {
	args := []string{"apply", "-f", ex.path}
	how := "kubectl apply"
	if dryRun {
		args = []string{"apply", "--dry-run=server", "-f", ex.path}
		how = "kubectl apply --dry-run=server"
	}
	var v verdict
	var problems []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := runKubectl(ctx, args...)
		v = verdict{admitted: res.err == nil, output: res.output()}
		problems = ex.check(v, how)
		if len(hardProblems(problems)) == 0 || time.Now().After(deadline) {
			return v, problems
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// snapshot records, per object, whether it exists and its resourceVersion.
func snapshot(ctx context.Context, objs []*unstructured.Unstructured) (map[int]string, error) {
	out := map[int]string{}
	for i, o := range objs {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(o.GroupVersionKind())
		err := env.client.Get(ctx, client.ObjectKeyFromObject(o), got)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("reading %s %s: %w", o.GetKind(), client.ObjectKeyFromObject(o), err)
		default:
			out[i] = got.GetResourceVersion()
		}
	}
	return out, nil
}

// TestExamples applies every example through `kubectl apply --dry-run=server` and a real `kubectl apply`: both must
// give the verdict (and message, and deciding layer) of its header, and the dry run must leave no trace. Objects a
// good example created are deleted again, so every case is judged against examples/00-world alone.
func TestExamples(t *testing.T) {
	needCluster(t)
	for _, ex := range loadExamples(t) {
		t.Run(ex.name, func(t *testing.T) {
			ctx := testContext(t)
			before, err := snapshot(ctx, ex.objs)
			if err != nil {
				t.Fatal(err)
			}

			dry, problems := applyExample(ctx, ex, true)
			reportProblems(t, problems)
			after, err := snapshot(ctx, ex.objs)
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range ex.objs {
				if before[i] != after[i] {
					t.Errorf("dry run left a trace on %s %s: resourceVersion %q → %q", o.GetKind(), client.ObjectKeyFromObject(o), before[i], after[i])
				}
			}

			applied, problems := applyExample(ctx, ex, false)
			reportProblems(t, problems)
			if applied.admitted != dry.admitted {
				t.Errorf("dry run and real apply disagree: dry run admitted=%v, real admitted=%v", dry.admitted, applied.admitted)
			}
			if applied.admitted {
				cleanUpCreated(t, ctx, ex.objs, before)
			}
		})
	}
}

func reportProblems(t *testing.T, problems []string) {
	t.Helper()
	for _, p := range problems {
		if strings.HasPrefix(p, "(message-tbd") {
			t.Log(p)
		} else {
			t.Error(p)
		}
	}
}

// cleanUpCreated deletes (in reverse order) the objects that did not exist before; namespaces are kept, as no
// namespace controller runs on the suite's control plane to finalise them.
func cleanUpCreated(t *testing.T, ctx context.Context, objs []*unstructured.Unstructured, before map[int]string) {
	t.Helper()
	for i := len(objs) - 1; i >= 0; i-- {
		o := objs[i]
		if _, existed := before[i]; existed || o.GetKind() == "Namespace" {
			continue
		}
		obj := o.DeepCopy()
		err := eventuallyErr(10*time.Second, func() error {
			if err := env.client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			return nil
		})
		if err != nil {
			t.Errorf("cleaning up %s %s: %v", o.GetKind(), client.ObjectKeyFromObject(o), err)
		}
	}
}

func TestParseExampleHeader(t *testing.T) {
	dir := t.TempDir()
	obj := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"
	tests := []struct {
		name    string
		text    string
		want    example
		wantErr bool
	}{
		{"denied with everything", "# expect: denied\n# message: a: b \"c\"\n# message-tbd\n# rule: H-X\n# by: webhook\n# free text: with colon\n" + obj,
			example{expect: "denied", message: `a: b "c"`, tbd: true, rule: "H-X", by: "webhook"}, false},
		{"admitted", "# expect: admitted\n# by: cel\n" + obj, example{expect: "admitted", by: "cel"}, false},
		{"header ends at the first non-comment line", "# expect: admitted\n" + obj + "# message: late\n", example{expect: "admitted"}, false},
		{"no expect", "# by: cel\n" + obj, example{}, true},
		{"denied without message", "# expect: denied\n" + obj, example{}, true},
		{"unknown layer", "# expect: admitted\n# by: magic\n" + obj, example{}, true},
		{"no objects", "# expect: admitted\n", example{}, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, fmt.Sprintf("%d.yaml", i))
			if err := os.WriteFile(p, []byte(tt.text), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := parseExample(p, "x.yaml")
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.expect != tt.want.expect || got.message != tt.want.message || got.tbd != tt.want.tbd || got.rule != tt.want.rule || got.by != tt.want.by {
				t.Fatalf("got %+v, want %+v", *got, tt.want)
			}
			if len(got.objs) != 1 || got.objs[0].GetKind() != "ConfigMap" {
				t.Fatalf("objects: %v", got.objs)
			}
		})
	}
}

// TestExampleHeadersAreValid parses every example without a cluster, so a broken header fails fast.
func TestExampleHeadersAreValid(t *testing.T) {
	loadExamples(t)
}
