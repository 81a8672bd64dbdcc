// Package dod runs the Definition of Done on this machine, one test per item, each backed by real calls against
// real peers (moto for AWS KMS + STS, …). Every item is a TestDoD<Item> test that prints exactly one line,
//
//	DoD <item>: PASS <evidence>
//	DoD <item>: FAIL <reason>
//
// when it ends (a missing peer is a FAIL here, never a silent skip). `make dod` runs them and prints the lines. A
// new item is a new file in this directory with its own TestDoD<Item> that calls item(t, "<item>").
package dod

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// result collects an item's evidence; the line is printed when the test ends.
type result struct {
	mu       sync.Mutex
	evidence []string
}

// Evidence adds a fact the PASS line reports (what was called, what came back).
func (r *result) Evidence(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evidence = append(r.evidence, fmt.Sprintf(format, args...))
}

// item registers t as Definition-of-Done item name: when t ends, one line says PASS with the evidence, or FAIL
// (failed or skipped: a missing peer does not count as done).
func item(t *testing.T, name string) *result {
	t.Helper()
	r := &result{}
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		switch {
		case t.Failed():
			line("FAIL", name, "see the test output above")
		case t.Skipped():
			line("FAIL", name, "not run: a required peer is missing (see the skip message above)")
		default:
			line("PASS", name, strings.Join(r.evidence, "; "))
		}
	})
	return r
}

var lineMu sync.Mutex

func line(verdict, name, detail string) {
	lineMu.Lock()
	defer lineMu.Unlock()
	fmt.Fprintf(os.Stdout, "DoD %s: %s %s\n", name, verdict, detail)
}
