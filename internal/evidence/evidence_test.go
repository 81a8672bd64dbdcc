package evidence

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden evidence files that bench/charts parses")

// The golden files are the chart tool's test input (bench/charts/testdata): a format change here shows up as a
// diff there, so the writer and the reader cannot drift apart unnoticed.
const goldenDir = "../../bench/charts/testdata"

var t0 = time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)

func sampleLoad() Load {
	lat := func(ms ...int) []time.Duration {
		var out []time.Duration
		for _, m := range ms {
			out = append(out, time.Duration(m)*time.Millisecond)
		}
		return out
	}
	return Load{
		Kind: KindLoad, Name: "e2e-load", Title: "200 writers through the API server", Started: t0,
		Machine: Machine{CPU: "Test CPU", Cores: 2, LoadStart: 3.5, LoadEnd: 4.25},
		Phases: []Phase{
			{Name: "with webhook", Writers: 200, Seconds: 4, Admitted: 3, Denied: 3, Latency: Histogram(lat(100, 120, 150, 300, 900, 1500))},
			{Name: "without webhook", Writers: 200, Seconds: 4, Admitted: 6, Latency: Histogram(lat(50, 60, 70, 80, 200, 700))},
		},
		Admission: []AdmissionHistogram{
			{Webhook: "vtenant.cmk.apeiro.io", Phase: "with webhook", Count: 4, Buckets: []PromBucket{{0.005, 0}, {0.025, 1}, {0.1, 2}, {0.5, 3}, {1, 4}}},
			{Webhook: "mtenant.cmk.apeiro.io", Phase: "with webhook", Count: 4, Buckets: []PromBucket{{0.005, 1}, {0.025, 2}, {0.1, 4}}},
		},
	}
}

func sampleFault() Fault {
	r := newFault("e2e-fault", "API server killed and restarted", t0)
	r.f.Machine = Machine{CPU: "Test CPU", Cores: 2, LoadStart: 3.5}
	for i, o := range []string{OK, Denied, Failed, Failed, OK, Denied} {
		r.Observe(t0.Add(time.Duration(i)*500*time.Millisecond), time.Duration(10*(i+1))*time.Millisecond, o)
	}
	r.Mark("API server down", t0.Add(900*time.Millisecond), t0.Add(2100*time.Millisecond))
	f := r.Fault()
	f.Machine.LoadEnd = 4.25 // Fault() reads the live load average; the golden file is fixed
	return f
}

func TestGoldenRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		back any
	}{
		{"e2e-load", sampleLoad(), &Load{}},
		{"e2e-fault", sampleFault(), &Fault{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path, err := Write(dir, tc.name, tc.v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join(goldenDir, tc.name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/evidence -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from what Write produces now; run go test ./internal/evidence -update and check the charts still parse it", golden)
			}
			v, err := Decode(bytes.NewReader(got))
			if err != nil {
				t.Fatal(err)
			}
			switch x := v.(type) {
			case *Load:
				if !reflect.DeepEqual(*x, tc.v) {
					t.Errorf("round trip:\n got %+v\nwant %+v", *x, tc.v)
				}
			case *Fault:
				if !reflect.DeepEqual(*x, tc.v) {
					t.Errorf("round trip:\n got %+v\nwant %+v", *x, tc.v)
				}
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("Write left %d files, want only %s", len(entries), path)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"not JSON", `{`, "evidence file"},
		{"no kind", `{}`, "neither"},
		{"unknown kind", `{"kind":"bench"}`, "neither"},
		{"unknown field", `{"kind":"e2e-fault","extra":1}`, "unknown field"},
		{"trailing data", `{"kind":"e2e-fault"} {}`, "after top-level value"},
		{"bad outcome", `{"kind":"e2e-fault","samples":[{"atSeconds":1,"latencyMillis":1,"outcome":"maybe"}]}`, "outcome"},
		{"negative latency", `{"kind":"e2e-fault","samples":[{"atSeconds":1,"latencyMillis":-1,"outcome":"ok"}]}`, "non-negative"},
		{"mark ends first", `{"kind":"e2e-fault","marks":[{"label":"x","fromSeconds":2,"toSeconds":1}]}`, "mark"},
		{"falling latency buckets", `{"kind":"e2e-load","phases":[{"name":"p","latency":[{"upperMicros":5,"count":1},{"upperMicros":4,"count":1}]}]}`, "rising"},
		{"negative count", `{"kind":"e2e-load","phases":[{"name":"p","admitted":-1}]}`, "negative"},
		{"prom count beyond total", `{"kind":"e2e-load","admission":[{"webhook":"w","count":1,"buckets":[{"leSeconds":0.1,"cumulative":2}]}]}`, "rising"},
		{"prom falling cumulative", `{"kind":"e2e-load","admission":[{"webhook":"w","count":5,"buckets":[{"leSeconds":0.1,"cumulative":2},{"leSeconds":0.2,"cumulative":1}]}]}`, "rising"},
		{"wrong type", `{"kind":"e2e-fault","samples":"x"}`, "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode(%s) = %v, want an error containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestDecodeTooLarge(t *testing.T) {
	big := `{"kind":"e2e-fault","title":"` + strings.Repeat("x", MaxFileBytes) + `"}`
	if _, err := Decode(strings.NewReader(big)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Decode of %d bytes = %v, want a size error", len(big), err)
	}
}

func TestWriteRejects(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		v    any
	}{
		{"../escape", sampleFault()},
		{"a/b", sampleFault()},
		{"", sampleFault()},
		{"ok", "not evidence"},
		{"ok", Fault{Kind: KindFault, Samples: []Sample{{LatencyMillis: math.NaN(), Outcome: OK}}}},
		{"ok", Load{Kind: KindFault}},
	} {
		if p, err := Write(dir, tc.name, tc.v); err == nil {
			t.Errorf("Write(%q, %T) = %s, want an error", tc.name, tc.v, p)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("rejected writes left %d files", len(entries))
	}
}

// Unset, nothing is recorded and a nil recorder is safe to use everywhere.
func TestDisabledRecordsNothing(t *testing.T) {
	t.Setenv(EnvDir, "")
	r := NewFault("x", "y")
	if r != nil {
		t.Fatal("NewFault with the directory unset returned a recorder")
	}
	r.Observe(time.Now(), time.Second, OK)
	r.Mark("m", time.Now(), time.Now())
	if p, err := r.Write(t.TempDir()); p != "" || err != nil {
		t.Errorf("nil recorder Write = %q, %v", p, err)
	}
	t.Setenv(EnvDir, t.TempDir())
	if NewFault("x", "y") == nil {
		t.Error("NewFault with the directory set returned nil")
	}
}

func TestRecorderBounds(t *testing.T) {
	r := newFault("bounds", "", t0)
	for i := range MaxSamples + 10 {
		r.Observe(t0.Add(time.Duration(MaxSamples-i)*time.Microsecond), 0, OK)
	}
	for range MaxMarks + 5 {
		r.Mark("m", t0, t0)
	}
	f := r.Fault()
	if len(f.Samples) != MaxSamples || f.Dropped != 10 || len(f.Marks) != MaxMarks {
		t.Fatalf("kept %d samples (%d dropped), %d marks", len(f.Samples), f.Dropped, len(f.Marks))
	}
	for i := 1; i < len(f.Samples); i++ {
		if f.Samples[i].AtSeconds < f.Samples[i-1].AtSeconds {
			t.Fatal("samples not in start order")
		}
	}
}

func TestHistogram(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 1000; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	lat = append(lat, 0, time.Nanosecond)
	h := Histogram(lat)
	var n uint64
	prev := 0.0
	for _, b := range h {
		if b.UpperMicros <= prev {
			t.Fatalf("bounds not rising: %v", h)
		}
		prev = b.UpperMicros
		n += b.Count
	}
	if n != uint64(len(lat)) {
		t.Errorf("histogram holds %d, want %d", n, len(lat))
	}
	// The bucket holding 1 s has its upper bound within 2 % above it.
	if last := h[len(h)-1].UpperMicros; last < 1e6 || last > 1.021e6 {
		t.Errorf("top bucket bound %v µs, want 1 s within 2 %%", last)
	}
	if h[0].UpperMicros > 1.03 {
		t.Errorf("sub-microsecond latencies land in bucket with bound %v µs, want the first", h[0].UpperMicros)
	}
}

// FuzzDecode: whatever the input, Decode returns a checked value or an error, and a value it accepts writes back.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"e2e-load", "e2e-fault"} {
		if b, err := os.ReadFile(filepath.Join(goldenDir, name+".json")); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"kind":"e2e-fault","samples":[{"atSeconds":1e308,"latencyMillis":0,"outcome":"ok"}]}`))
	f.Add([]byte(`{"kind":"e2e-load","phases":[{"name":"p","latency":[{"upperMicros":1,"count":18446744073709551615}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Decode(bytes.NewReader(b))
		if err != nil {
			return
		}
		if _, err := Write(t.TempDir(), "fuzz", v); err != nil {
			t.Fatalf("Decode accepted what Write refuses: %v", err)
		}
	})
}
