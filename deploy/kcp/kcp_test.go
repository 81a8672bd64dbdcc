// Package kcpdeploy_test checks the kcp permission objects (deploy/kcp) without a kcp: they must stay applyable as
// they are and never widen beyond what docs/kcp.md ("Permissions in kcp") justifies. test/kcp (subtest binary)
// proves against a real kcp that they are also sufficient.
package kcpdeploy_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const group = "apeiro-cmk:webhook"

type objects struct {
	roles    map[string][]rbacv1.PolicyRule // kind/name -> rules
	bindings []rbacv1.ClusterRoleBinding    // RoleBindings converted (subjects and roleRef only)
}

// load reads the files a kustomization lists under resources.
func load(t *testing.T, dir string) objects {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	if len(k.Resources) == 0 {
		t.Fatalf("%s lists no resources", dir)
	}
	o := objects{roles: map[string][]rbacv1.PolicyRule{}}
	for _, f := range k.Resources {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(doc) == 0 {
				continue
			}
			j, _ := yaml.Marshal(doc)
			switch doc["kind"] {
			case "ClusterRole", "Role":
				var r rbacv1.ClusterRole
				if err := yaml.UnmarshalStrict(j, &r); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				o.roles[doc["kind"].(string)+"/"+r.Name] = r.Rules
			case "ClusterRoleBinding", "RoleBinding":
				var rb rbacv1.ClusterRoleBinding
				if err := yaml.UnmarshalStrict(j, &rb); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				o.bindings = append(o.bindings, rb)
			default:
				t.Fatalf("%s: kind %v: deploy/kcp holds RBAC objects only", f, doc["kind"])
			}
		}
	}
	return o
}

func TestKCPPermissions(t *testing.T) {
	for _, tc := range []struct {
		dir  string
		role string // the one role each directory grants
	}{
		{"shard", "ClusterRole/apeiro-cmk-webhook"},
		{"platform", "Role/apeiro-cmk-webhook-leader-election"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			o := load(t, tc.dir)
			if len(o.roles) != 1 || o.roles[tc.role] == nil {
				t.Fatalf("roles %v, want exactly %s", o.roles, tc.role)
			}
			if len(o.bindings) != 1 {
				t.Fatalf("%d bindings, want 1", len(o.bindings))
			}
			b := o.bindings[0]
			if b.RoleRef.Kind+"/"+b.RoleRef.Name != tc.role {
				t.Errorf("binding refers to %s/%s, want %s", b.RoleRef.Kind, b.RoleRef.Name, tc.role)
			}
			if len(b.Subjects) != 1 || b.Subjects[0].Kind != rbacv1.GroupKind || b.Subjects[0].Name != group {
				t.Errorf("subjects %+v, want only group %s", b.Subjects, group)
			}
			for _, r := range o.roles[tc.role] {
				if p := problems(r); p != "" {
					t.Errorf("rule %+v: %s", r, p)
				}
			}
		})
	}
}

// problems says what in r would widen the webhook beyond its documented needs ("" = nothing).
func problems(r rbacv1.PolicyRule) string {
	for _, l := range [][]string{r.Verbs, r.APIGroups, r.Resources, r.NonResourceURLs, r.ResourceNames} {
		if slices.Contains(l, "*") {
			return "wildcard"
		}
	}
	if len(r.NonResourceURLs) > 0 && (!slices.Equal(r.NonResourceURLs, []string{"/"}) || !slices.Equal(r.Verbs, []string{"access"})) {
		return "only verb access on / (entering a workspace) is needed as a non-resource rule"
	}
	for _, g := range r.APIGroups {
		if g == "rbac.authorization.k8s.io" || g == "admissionregistration.k8s.io" || g == "apis.kcp.io" {
			return "touches " + g
		}
	}
	has := func(res string, verbs ...string) bool {
		if !slices.Contains(r.Resources, res) {
			return false
		}
		for _, v := range verbs {
			if slices.Contains(r.Verbs, v) {
				return true
			}
		}
		return false
	}
	switch {
	case has("secrets", "list", "watch"):
		return "lists or watches Secrets: they are read by name only"
	case has("accounts", "update", "create", "delete"), has("serviceencryptionkeys", "update", "create", "delete"),
		has("webhooknotifications", "update", "patch", "create", "delete"), has("tenants", "update", "create", "delete"):
		return "writes a spec of our kinds: only metadata patches (finalizers) and status are written"
	case has("workspaces", "create", "update", "patch", "delete"):
		return "writes Workspaces"
	}
	return ""
}

// The checks themselves refuse what they are meant to refuse.
func TestProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule rbacv1.PolicyRule
		bad  bool
	}{
		{"status-patch", rbacv1.PolicyRule{APIGroups: []string{"cmk.apeiro.io"}, Resources: []string{"accounts/status"}, Verbs: []string{"patch"}}, false},
		{"access", rbacv1.PolicyRule{NonResourceURLs: []string{"/"}, Verbs: []string{"access"}}, false},
		{"secret-get", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "create"}}, false},
		{"verb-wildcard", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"*"}}, true},
		{"resource-wildcard", rbacv1.PolicyRule{APIGroups: []string{"cmk.apeiro.io"}, Resources: []string{"*"}, Verbs: []string{"get"}}, true},
		{"secret-list", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}}, true},
		{"account-spec", rbacv1.PolicyRule{APIGroups: []string{"cmk.apeiro.io"}, Resources: []string{"accounts"}, Verbs: []string{"update"}}, true},
		{"wnh-spec", rbacv1.PolicyRule{APIGroups: []string{"cmk.apeiro.io"}, Resources: []string{"webhooknotifications"}, Verbs: []string{"patch"}}, true},
		{"rbac", rbacv1.PolicyRule{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles"}, Verbs: []string{"get"}}, true},
		{"webhooks", rbacv1.PolicyRule{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations"}, Verbs: []string{"get"}}, true},
		{"other-url", rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}, true},
		{"workspace-create", rbacv1.PolicyRule{APIGroups: []string{"tenancy.kcp.io"}, Resources: []string{"workspaces"}, Verbs: []string{"create"}}, true},
	} {
		if got := problems(tc.rule) != ""; got != tc.bad {
			t.Errorf("%s: problems(%+v) = %q, want bad=%v", tc.name, tc.rule, problems(tc.rule), tc.bad)
		}
	}
}
