package admission

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"testing"
)

// TestRulesDocumented: every A-* rule constant in rules.go has a row in docs/admission.md's rule table and every
// A-* row there has a constant, so the table stays the source clients and dashboards read.
func TestRulesDocumented(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "rules.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var consts []string
	ast.Inspect(f, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if v, err := strconv.Unquote(lit.Value); err == nil {
				consts = append(consts, v)
			}
		}
		return true
	})
	doc, err := os.ReadFile("../../docs/admission.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, m := range regexp.MustCompile(`(?m)^\| (A-[A-Z0-9-]+)`).FindAllStringSubmatch(string(doc), -1) {
		if !slices.Contains(rows, m[1]) {
			rows = append(rows, m[1])
		}
	}
	if len(consts) == 0 || len(rows) == 0 {
		t.Fatalf("found %d constants and %d documented rules", len(consts), len(rows))
	}
	for _, c := range consts {
		if !slices.Contains(rows, c) {
			t.Errorf("rule %s (rules.go) has no row in docs/admission.md", c)
		}
	}
	for _, r := range rows {
		if !slices.Contains(consts, r) {
			t.Errorf("rule %s (docs/admission.md) has no constant in rules.go", r)
		}
	}
}
