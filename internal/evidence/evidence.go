// Package evidence writes the raw samples behind the charts of docs/performance.md and docs/reliability.md: the
// latency distributions of the load through the API server, and the request-by-request time series of the fault
// runs. The e2e tests record them only when APEIRO_EVIDENCE_DIR names a directory (make bench-e2e sets it); unset,
// every recorder is nil and every call on it does nothing, so the tests behave as they do without it. bench/charts
// reads the files (kind "e2e-load" or "e2e-fault") and renders the PNGs.
//
// The package uses the standard library only: it is linked into test binaries and must not pull anything along.
package evidence

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EnvDir names the directory evidence is written to; unset or empty, nothing is recorded.
const EnvDir = "APEIRO_EVIDENCE_DIR"

// Kinds of evidence file.
const (
	KindLoad  = "e2e-load"
	KindFault = "e2e-fault"
)

// Outcomes of one request in a fault run.
const (
	OK     = "ok"     // admitted (or answered as the caller wanted)
	Denied = "denied" // refused by the webhook's verdict: the system working
	Failed = "failed" // anything else: unreachable, timed out, server error
)

// Bounds on what one file may hold, so a long run cannot grow a recorder (or a hostile file a reader) without limit.
const (
	MaxSamples   = 200_000
	MaxMarks     = 64
	MaxBuckets   = 4096
	MaxPhases    = 16
	MaxWebhooks  = 64
	MaxFileBytes = 64 << 20
)

// Dir returns the evidence directory, or "" when recording is off.
func Dir() string { return strings.TrimSpace(os.Getenv(EnvDir)) }

// Enabled reports whether evidence is recorded.
func Enabled() bool { return Dir() != "" }

// Machine names the host a run was taken on; every chart prints it.
type Machine struct {
	CPU   string `json:"cpu"`
	Cores int    `json:"cores"`
	// Load averages (1 minute) at the start and the end of the run: the machine is shared, so they say how much
	// of a latency is queueing for a CPU.
	LoadStart float64 `json:"loadAverageAtStart"`
	LoadEnd   float64 `json:"loadAverageAtEnd"`
}

// CurrentMachine reads the CPU model, the core count and the 1-minute load average (LoadStart) from /proc.
func CurrentMachine() Machine {
	m := Machine{CPU: "unknown CPU", Cores: runtime.NumCPU(), LoadStart: LoadAverage()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// LoadAverage is the 1-minute load average, or -1 where /proc/loadavg cannot be read.
func LoadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// Bucket is one non-empty bucket of a latency histogram: Count requests took at most UpperMicros (and more than
// the previous bucket's bound). The shape is bench/load's, so the chart code reads both.
type Bucket struct {
	UpperMicros float64 `json:"upperMicros"`
	Count       uint64  `json:"count"`
}

// Histogram buckets latencies logarithmically (each bucket 2 % wider than the last, from 1 µs), so any quantile
// read from it is within 2 % of the exact one, whatever the number of requests.
func Histogram(latencies []time.Duration) []Bucket {
	const base, growth = float64(time.Microsecond), 1.02
	counts := map[int]uint64{}
	for _, d := range latencies {
		i := 0
		if float64(d) > base {
			i = int(math.Log(float64(d)/base) / math.Log(growth))
		}
		counts[min(i, 1200)]++ // 1 µs · 1.02^1200 ≈ 20 000 s: beyond any request timeout
	}
	out := make([]Bucket, 0, len(counts))
	for i, c := range counts {
		out = append(out, Bucket{UpperMicros: base * math.Pow(growth, float64(i+1)) / float64(time.Microsecond), Count: c})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].UpperMicros < out[b].UpperMicros })
	return out
}

// Phase is one stretch of load at a fixed configuration (e.g. with or without the webhook registered).
type Phase struct {
	Name     string   `json:"name"`
	Writers  int      `json:"writers"`
	Seconds  float64  `json:"seconds"`
	Admitted int64    `json:"admitted"`
	Denied   int64    `json:"denied"`
	Failed   int64    `json:"failed"`
	Latency  []Bucket `json:"latency"`
}

// PromBucket is one bucket of a Prometheus histogram: Cumulative observations took at most LeSeconds. The +Inf
// bucket is not stored (JSON has no infinity); it equals the histogram's Count.
type PromBucket struct {
	LeSeconds  float64 `json:"leSeconds"`
	Cumulative float64 `json:"cumulative"`
}

// AdmissionHistogram is the API server's apiserver_admission_webhook_admission_duration_seconds for one webhook,
// grown during one phase (summed over operation, type and verdict).
type AdmissionHistogram struct {
	Webhook string       `json:"webhook"`
	Phase   string       `json:"phase"`
	Count   float64      `json:"count"`
	Buckets []PromBucket `json:"buckets"`
}

// Load is the evidence of a load run through the API server.
type Load struct {
	Kind      string               `json:"kind"`
	Name      string               `json:"name"`
	Title     string               `json:"title"`
	Started   time.Time            `json:"started"`
	Machine   Machine              `json:"machine"`
	Phases    []Phase              `json:"phases"`
	Admission []AdmissionHistogram `json:"admission"`
}

// Sample is one request of a fault run: sent AtSeconds after the run started, answered after LatencyMillis, with
// an Outcome (OK, Denied or Failed).
type Sample struct {
	AtSeconds     float64 `json:"atSeconds"`
	LatencyMillis float64 `json:"latencyMillis"`
	Outcome       string  `json:"outcome"`
}

// Mark is a stretch of a fault run: the fault itself (FromSeconds to ToSeconds after the start), or a phase of it.
type Mark struct {
	Label       string  `json:"label"`
	FromSeconds float64 `json:"fromSeconds"`
	ToSeconds   float64 `json:"toSeconds"`
}

// Fault is the evidence of a fault run.
type Fault struct {
	Kind    string    `json:"kind"`
	Name    string    `json:"name"`
	Title   string    `json:"title"`
	Started time.Time `json:"started"`
	Machine Machine   `json:"machine"`
	Marks   []Mark    `json:"marks"`
	Samples []Sample  `json:"samples"`
	// Dropped counts samples beyond MaxSamples, which were not kept.
	Dropped int `json:"dropped,omitempty"`
}

// FaultRecorder collects a Fault while the run goes on; it is safe for concurrent use. A nil *FaultRecorder
// records nothing, so callers need no "if enabled" around each call.
type FaultRecorder struct {
	mu    sync.Mutex
	start time.Time
	f     Fault
}

// NewFault starts the evidence of a fault run named name (a file name stem) at now; nil when recording is off.
func NewFault(name, title string) *FaultRecorder {
	if !Enabled() {
		return nil
	}
	return newFault(name, title, time.Now())
}

func newFault(name, title string, start time.Time) *FaultRecorder {
	return &FaultRecorder{start: start, f: Fault{Kind: KindFault, Name: name, Title: title, Started: start.UTC(), Machine: CurrentMachine()}}
}

// Observe records one request sent at start that took latency and ended with outcome.
func (r *FaultRecorder) Observe(start time.Time, latency time.Duration, outcome string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.f.Samples) >= MaxSamples {
		r.f.Dropped++
		return
	}
	r.f.Samples = append(r.f.Samples, Sample{AtSeconds: start.Sub(r.start).Seconds(), LatencyMillis: float64(latency) / float64(time.Millisecond), Outcome: outcome})
}

// Mark records that label held from from to to (e.g. "API server down").
func (r *FaultRecorder) Mark(label string, from, to time.Time) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.f.Marks) < MaxMarks {
		r.f.Marks = append(r.f.Marks, Mark{Label: label, FromSeconds: from.Sub(r.start).Seconds(), ToSeconds: to.Sub(r.start).Seconds()})
	}
}

// Fault returns a copy of what was recorded so far, samples in start order, with the load average of now as
// LoadEnd.
func (r *FaultRecorder) Fault() Fault {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.f
	f.Samples = append([]Sample(nil), r.f.Samples...)
	f.Marks = append([]Mark(nil), r.f.Marks...)
	sort.SliceStable(f.Samples, func(a, b int) bool { return f.Samples[a].AtSeconds < f.Samples[b].AtSeconds })
	f.Machine.LoadEnd = LoadAverage()
	return f
}

// Write writes the recorded fault into dir; it returns the file's path ("" for a nil recorder).
func (r *FaultRecorder) Write(dir string) (string, error) {
	if r == nil {
		return "", nil
	}
	f := r.Fault()
	return Write(dir, f.Name, f)
}

var stem = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Write stores v (a Load or a Fault) as dir/<name>.json, replacing the file atomically so a reader never sees half
// of it. name must be a plain file name stem.
func Write(dir, name string, v any) (string, error) {
	if !stem.MatchString(name) || strings.Contains(name, "..") {
		return "", fmt.Errorf("evidence name %q: want letters, digits, '.', '_' or '-'", name)
	}
	if err := check(v); err != nil {
		return "", fmt.Errorf("evidence %s: %w", name, err)
	}
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return "", fmt.Errorf("evidence %s: %w", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("evidence directory: %w", err)
	}
	path := filepath.Join(dir, name+".json")
	tmp, err := os.CreateTemp(dir, "."+name+"-*.tmp")
	if err != nil {
		return "", fmt.Errorf("evidence %s: %w", name, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("evidence %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("evidence %s: %w", name, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", fmt.Errorf("evidence %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("evidence %s: %w", name, err)
	}
	return path, nil
}

// Decode reads one evidence file, at most MaxFileBytes, and returns a *Load or a *Fault after checking it: known
// kind, no unknown fields, finite non-negative numbers, known outcomes, marks that end after they start, and no
// more entries than the bounds above.
func Decode(rd io.Reader) (any, error) {
	b, err := io.ReadAll(io.LimitReader(rd, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("evidence file larger than %d bytes", MaxFileBytes)
	}
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("evidence file: %w", err)
	}
	var v any
	switch head.Kind {
	case KindLoad:
		v = &Load{}
	case KindFault:
		v = &Fault{}
	default:
		return nil, fmt.Errorf("evidence file: kind %q is neither %q nor %q", head.Kind, KindLoad, KindFault)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, fmt.Errorf("evidence file (%s): %w", head.Kind, err)
	}
	switch x := v.(type) {
	case *Load:
		err = check(*x)
	case *Fault:
		err = check(*x)
	}
	if err != nil {
		return nil, fmt.Errorf("evidence file (%s): %w", head.Kind, err)
	}
	return v, nil
}

// check validates what Write stores and Decode returns.
func check(v any) error {
	switch x := v.(type) {
	case *Load:
		return check(*x)
	case *Fault:
		return check(*x)
	case Load:
		if x.Kind != KindLoad {
			return fmt.Errorf("kind %q, want %q", x.Kind, KindLoad)
		}
		if len(x.Phases) > MaxPhases || len(x.Admission) > MaxWebhooks*MaxPhases {
			return fmt.Errorf("%d phases and %d admission histograms exceed the bounds", len(x.Phases), len(x.Admission))
		}
		for _, p := range x.Phases {
			if err := checkBuckets(p.Name, p.Latency); err != nil {
				return err
			}
			if p.Admitted < 0 || p.Denied < 0 || p.Failed < 0 || p.Writers < 0 || !finite(p.Seconds) || p.Seconds < 0 {
				return fmt.Errorf("phase %q: negative or non-finite counts", p.Name)
			}
		}
		for _, h := range x.Admission {
			if len(h.Buckets) > MaxBuckets || !finite(h.Count) || h.Count < 0 {
				return fmt.Errorf("admission histogram %q: bad count or too many buckets", h.Webhook)
			}
			prevLe, prev := math.Inf(-1), 0.0
			for _, b := range h.Buckets {
				if !finite(b.LeSeconds) || !finite(b.Cumulative) || b.LeSeconds <= prevLe || b.Cumulative < prev || b.Cumulative > h.Count {
					return fmt.Errorf("admission histogram %q: buckets must have rising bounds and counts up to the total", h.Webhook)
				}
				prevLe, prev = b.LeSeconds, b.Cumulative
			}
		}
	case Fault:
		if x.Kind != KindFault {
			return fmt.Errorf("kind %q, want %q", x.Kind, KindFault)
		}
		if len(x.Samples) > MaxSamples || len(x.Marks) > MaxMarks || x.Dropped < 0 {
			return fmt.Errorf("%d samples and %d marks exceed the bounds", len(x.Samples), len(x.Marks))
		}
		for _, m := range x.Marks {
			if !finite(m.FromSeconds) || !finite(m.ToSeconds) || m.ToSeconds < m.FromSeconds {
				return fmt.Errorf("mark %q: want finite bounds that do not end before they start", m.Label)
			}
		}
		for i, s := range x.Samples {
			if !finite(s.AtSeconds) || !finite(s.LatencyMillis) || s.LatencyMillis < 0 {
				return fmt.Errorf("sample %d: want finite times and a non-negative latency", i)
			}
			if s.Outcome != OK && s.Outcome != Denied && s.Outcome != Failed {
				return fmt.Errorf("sample %d: outcome %q is none of %s, %s, %s", i, s.Outcome, OK, Denied, Failed)
			}
		}
	default:
		return fmt.Errorf("cannot store %T as evidence", v)
	}
	return nil
}

func checkBuckets(name string, bs []Bucket) error {
	if len(bs) > MaxBuckets {
		return fmt.Errorf("phase %q: %d latency buckets exceed %d", name, len(bs), MaxBuckets)
	}
	prev := 0.0
	for _, b := range bs {
		if !finite(b.UpperMicros) || b.UpperMicros <= prev {
			return fmt.Errorf("phase %q: latency buckets must have finite, rising upper bounds", name)
		}
		prev = b.UpperMicros
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
