package main

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

type runConfig struct {
	PhaseSeconds float64  `json:"phaseSeconds"`
	Concurrency  []int    `json:"concurrency"`
	Rounds       int      `json:"rounds"`
	SoakSeconds  float64  `json:"soakSeconds"`
	WebhookArgs  []string `json:"webhookArgs,omitempty"`
}

// phase is one measured stretch of load against one target.
type phase struct {
	Target          string  `json:"target"`
	Concurrency     int     `json:"concurrency"`
	Round           int     `json:"round"`
	Soak            bool    `json:"soak,omitempty"`
	Requests        uint64  `json:"requests"`
	Seconds         float64 `json:"seconds"`
	RPS             float64 `json:"rps"`
	P50ms           float64 `json:"p50ms"`
	P99ms           float64 `json:"p99ms"`
	P999ms          float64 `json:"p999ms"`
	MaxMs           float64 `json:"maxMs"`
	ServerP99ms     float64 `json:"serverP99ms,omitempty"`
	CPUMicrosPerReq float64 `json:"cpuMicrosPerRequest"`
	CPUCores        float64 `json:"cpuCores"`
	Errors          int64   `json:"errors"`
	Unexpected      int64   `json:"unexpectedVerdicts"`
	FirstError      string  `json:"firstError,omitempty"`
	Latency         []point `json:"latency"`
}

type rssSample struct {
	Target  string  `json:"target"`
	Seconds float64 `json:"seconds"`
	MiB     float64 `json:"mib"`
}

// summaryRow compares the targets at one concurrency, over all rounds (requests summed, latencies the worst round).
type summaryRow struct {
	Concurrency     int     `json:"concurrency"`
	OursRPS         float64 `json:"oursRPS"`
	BareRPS         float64 `json:"bareRPS"`
	Ratio           float64 `json:"ratio"`
	OursP99ms       float64 `json:"oursP99ms"`
	BareP99ms       float64 `json:"bareP99ms"`
	OursServerP99ms float64 `json:"oursServerP99ms"`
	OursCPUMicros   float64 `json:"oursCPUMicrosPerRequest"`
	BareCPUMicros   float64 `json:"bareCPUMicrosPerRequest"`
}

type results struct {
	Machine machine      `json:"machine"`
	Started string       `json:"started"`
	Config  runConfig    `json:"config"`
	Phases  []phase      `json:"phases"`
	Summary []summaryRow `json:"summary"`
	RSS     []rssSample  `json:"rss"`
	// IdleCores is each process's CPU use (in cores) over 5 s without requests, measured before the phases.
	IdleCores map[string]float64 `json:"idleCores"`
}

func summarize(phases []phase) []summaryRow {
	type acc struct {
		req            uint64
		sec, cpu       float64
		p99, serverP99 float64
	}
	var order []int
	sums := map[int]map[string]*acc{}
	for _, p := range phases {
		if p.Soak {
			continue
		}
		if sums[p.Concurrency] == nil {
			sums[p.Concurrency] = map[string]*acc{}
			order = append(order, p.Concurrency)
		}
		a := sums[p.Concurrency][p.Target]
		if a == nil {
			a = &acc{}
			sums[p.Concurrency][p.Target] = a
		}
		a.req += p.Requests
		a.sec += p.Seconds
		a.cpu += p.CPUMicrosPerReq * float64(p.Requests)
		a.p99 = max(a.p99, p.P99ms)
		a.serverP99 = max(a.serverP99, p.ServerP99ms)
	}
	var out []summaryRow
	for _, n := range order {
		o, b := sums[n]["apeiro-cmk"], sums[n]["bare"]
		if o == nil || b == nil || o.req == 0 || b.req == 0 {
			continue
		}
		r := summaryRow{Concurrency: n, OursRPS: float64(o.req) / o.sec, BareRPS: float64(b.req) / b.sec,
			OursP99ms: o.p99, BareP99ms: b.p99, OursServerP99ms: o.serverP99,
			OursCPUMicros: o.cpu / float64(o.req), BareCPUMicros: b.cpu / float64(b.req)}
		r.Ratio = r.OursRPS / r.BareRPS
		out = append(out, r)
	}
	return out
}

// markdown renders the run as the tables docs/performance.md shows.
func markdown(r results) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nMachine: %s, %d cores, %s, kernel %s; load average %.1f at start, %.1f at end. Phases of %.0f s, %d rounds. Webhook flags: %q.\n\n",
		r.Machine.CPU, r.Machine.Cores, r.Machine.GoVersion, r.Machine.Kernel, r.Machine.LoadStart, r.Machine.LoadEnd, r.Config.PhaseSeconds, r.Config.Rounds,
		r.Config.WebhookArgs)
	fmt.Fprintf(&b, "Idle CPU before the phases (cores): apeiro-cmk %.3f, bare %.3f.\n\n", r.IdleCores["apeiro-cmk"], r.IdleCores["bare"])
	b.WriteString("| concurrency | ours req/s | bare req/s | ours ÷ bare | ours p99 (client) | bare p99 (client) | ours p99 (in-process) | ours CPU/req | bare CPU/req |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Summary {
		fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.2f | %.2f ms | %.2f ms | %.2f ms | %.0f µs | %.0f µs |\n", s.Concurrency, s.OursRPS, s.BareRPS, s.Ratio,
			s.OursP99ms, s.BareP99ms, s.OursServerP99ms, s.OursCPUMicros, s.BareCPUMicros)
	}
	b.WriteString("\n| target | concurrency | round | req/s | p50 | p99 | p99.9 | max | CPU/req | cores busy | errors |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range r.Phases {
		name := p.Target
		if p.Soak {
			name += " (soak)"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %.0f | %.2f ms | %.2f ms | %.2f ms | %.1f ms | %.0f µs | %.2f | %d |\n", name, p.Concurrency, p.Round, p.RPS,
			p.P50ms, p.P99ms, p.P999ms, p.MaxMs, p.CPUMicrosPerReq, p.CPUCores, p.Errors+p.Unexpected)
	}
	return b.String()
}

// sampler records the RSS of every target at a fixed interval for the whole run.
type sampler struct {
	stopOnce sync.Once
	done     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	samples  []rssSample
}

func startSampler(targets []*target, every time.Duration) *sampler {
	s := &sampler{done: make(chan struct{})}
	start := time.Now()
	s.wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			for _, t := range targets {
				if rss, err := procRSS(t.pid); err == nil {
					s.mu.Lock()
					s.samples = append(s.samples, rssSample{Target: t.Name, Seconds: time.Since(start).Seconds(), MiB: float64(rss) / (1 << 20)})
					s.mu.Unlock()
				}
			}
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
		}
	})
	return s
}

func (s *sampler) stop() []rssSample {
	s.stopOnce.Do(func() { close(s.done) })
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}
