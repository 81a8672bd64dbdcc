package pluginbacked_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/pluginbacked"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// TestKeyProberKeyState: only a key the keystore reports ENABLED answers. Every other state — and a plugin that
// names none — is a *keychain.KeyStateError wrapping ErrKeyDisabled, never ErrKeyNotFound, and quotes nothing but a
// well-formed state name.
func TestKeyProberKeyState(t *testing.T) {
	cases := []struct {
		state     string // "" in the table means "the plugin left status empty"
		wantState string // KeyStateError.State; "-" = the key answers
	}{
		{"ENABLED", "-"},
		{"enabled", "-"},
		{" Enabled\n", "-"},
		{"DISABLED", "DISABLED"},
		{"PENDING_DELETION", "PENDING_DELETION"},
		{"PENDING_IMPORT", "PENDING_IMPORT"},
		{"UNKNOWN", "UNKNOWN"},
		{"", ""},
		{"ENABLED; DROP TABLE", "UNKNOWN"},
		{"disabled since 2026-01-01 by arn:aws:iam::999999999999:user/someone-else", "UNKNOWN"},
		{strings.Repeat("A", 4096), "UNKNOWN"},
		{"ENABLED\x00", "UNKNOWN"},
	}
	for _, c := range cases {
		name := c.state
		if len(name) > 24 {
			name = name[:24]
		}
		t.Run(name, func(t *testing.T) {
			ops := &fakeKeyOps{state: c.state}
			if c.state == "" {
				ops.state = " " // the fake turns "" into ENABLED; a blank status is what a silent plugin sends
			}
			err := proberFor(ops, 0).ProbeKey(context.Background(), acct("acme-eu", "k"))
			if c.wantState == "-" {
				if err != nil {
					t.Fatalf("ProbeKey = %v, want the key to answer", err)
				}
				return
			}
			var se *keychain.KeyStateError
			if !errors.As(err, &se) || !errors.Is(err, keychain.ErrKeyDisabled) || errors.Is(err, admission.ErrKeyNotFound) {
				t.Fatalf("ProbeKey = %v (%T), want a KeyStateError wrapping ErrKeyDisabled", err, err)
			}
			if se.State != c.wantState {
				t.Fatalf("State = %q, want %q", se.State, c.wantState)
			}
			if c.wantState == "UNKNOWN" && c.state != "UNKNOWN" && strings.Contains(err.Error(), strings.TrimSpace(c.state)) {
				t.Fatalf("the plugin's raw state travelled into the error: %q", err)
			}
		})
	}
}

// TestKeyProberDisabledNotCached: a not-enabled answer is not cached (the key's owner may enable it a moment later),
// an enabled one is; a key disabled while cached is seen once the cache is dropped (TTL or Forget).
func TestKeyProberDisabledNotCached(t *testing.T) {
	ctx := context.Background()
	ops := &fakeKeyOps{state: "DISABLED"}
	p := proberFor(ops, 0)
	a := acct("acme-eu", "k")
	if err := p.ProbeKey(ctx, a); !errors.Is(err, keychain.ErrKeyDisabled) {
		t.Fatalf("disabled: %v", err)
	}
	ops.mu.Lock()
	ops.state = pluginbacked.StateEnabled
	ops.mu.Unlock()
	if err := p.ProbeKey(ctx, a); err != nil {
		t.Fatalf("enabled again: %v", err)
	}
	if err := p.ProbeKey(ctx, a); err != nil || ops.count() != 2 {
		t.Fatalf("cached answer: %v, %d GetKey calls, want 2", err, ops.count())
	}
	ops.mu.Lock()
	ops.state = "PENDING_DELETION"
	ops.mu.Unlock()
	p.Forget()
	if err := p.ProbeKey(ctx, a); !errors.Is(err, keychain.ErrKeyDisabled) {
		t.Fatalf("pending deletion after Forget: %v", err)
	}
}

var stateName = regexp.MustCompile(`^[A-Z][A-Z_]{0,31}$`)

// FuzzKeyProberState: whatever a plugin puts into GetKey's status, the probe answers only for ENABLED, and a
// refusal quotes a state name (or UNKNOWN / nothing), never other bytes from the plugin.
func FuzzKeyProberState(f *testing.F) {
	for _, s := range []string{"ENABLED", "enabled", "DISABLED", "PENDING_DELETION", "", " ", "x\x00y", "ÉNABLED", "ENABLED_"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, state string) {
		ops := &fakeKeyOps{state: state}
		if state == "" {
			ops.state = " "
		}
		err := proberFor(ops, 0).ProbeKey(context.Background(), acct("acme-eu", "k"))
		enabled := strings.ToUpper(strings.TrimSpace(ops.state)) == pluginbacked.StateEnabled
		if enabled != (err == nil) {
			t.Fatalf("state %q: ProbeKey = %v", state, err)
		}
		if err == nil {
			return
		}
		var se *keychain.KeyStateError
		if !errors.As(err, &se) {
			t.Fatalf("state %q: %v is not a KeyStateError", state, err)
		}
		if se.State != "" && !stateName.MatchString(se.State) {
			t.Fatalf("state %q quoted as %q", state, se.State)
		}
	})
}
