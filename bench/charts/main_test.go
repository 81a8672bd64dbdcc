package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The golden evidence files in testdata are written by internal/evidence's tests: rendering them proves the chart
// tool reads what the e2e tests write.
func TestRenderGoldenEvidence(t *testing.T) {
	out := t.TempDir()
	if err := run("testdata", out, "t"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"t-e2e-load-latency.png", "t-e2e-load-admission.png", "t-e2e-fault.png"} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r := img.Bounds(); r.Dx() < 500 || r.Dy() < 250 {
			t.Errorf("%s: %v, want a full-size chart", name, r)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 3 {
		t.Errorf("wrote %d files, want 3", len(entries))
	}
}

// bench/load's results.json (no kind) still renders as before: one distribution per concurrency, soak phases left
// out, and the RSS chart.
func TestRenderBenchLoad(t *testing.T) {
	out := t.TempDir()
	if err := run(filepath.Join("testdata", "bench-load", "results.json"), out, "b"); err != nil {
		t.Fatal(err)
	}
	var got []string
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if want := "b-latency-c1.png b-latency-c16.png b-rss.png"; strings.Join(got, " ") != want {
		t.Errorf("wrote %v, want %s", got, want)
	}
}

func TestRenderRejects(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"not JSON", `{"kind":`, "unexpected end"},
		{"unknown kind", `{"kind":"other"}`, "unknown kind"},
		{"fault without samples", `{"kind":"e2e-fault","name":"x"}`, "no samples"},
		{"unknown outcome", `{"kind":"e2e-fault","name":"x","samples":[{"atSeconds":0,"latencyMillis":1,"outcome":"maybe"}]}`, "unknown outcome"},
		{"name escapes", `{"kind":"e2e-fault","name":"../x","samples":[{"atSeconds":0,"latencyMillis":1,"outcome":"ok"}]}`, "evidence name"},
		{"name with slash", `{"kind":"e2e-load","name":"a/b","phases":[{"name":"p"}]}`, "evidence name"},
		{"load without phases", `{"kind":"e2e-load","name":"x"}`, "no phases"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, out := t.TempDir(), t.TempDir()
			in := filepath.Join(dir, "in.json")
			if err := os.WriteFile(in, []byte(tc.in), 0o644); err != nil {
				t.Fatal(err)
			}
			err := run(in, out, "t")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run = %v, want an error containing %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(out); len(entries) != 0 {
				t.Errorf("a rejected input left %d files", len(entries))
			}
		})
	}
	if err := run(t.TempDir(), t.TempDir(), "t"); err == nil || !strings.Contains(err.Error(), "no *.json") {
		t.Errorf("empty directory: %v", err)
	}
}
