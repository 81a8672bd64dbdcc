package e2e

import (
	"context"
	"maps"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apeirora/apeiro-cmk/internal/devstack"
	"github.com/apeirora/apeiro-cmk/internal/evidence"
)

// Evidence for the charts of docs/performance.md and docs/reliability.md (internal/evidence, `make bench-e2e`).
// Everything here does nothing unless APEIRO_EVIDENCE_DIR is set: the recorders are nil and no prober starts, so
// the tests run as they do in CI.

// recordFault plugs a fault test into the evidence with one call: it returns the recorder of this run, written to
// APEIRO_EVIDENCE_DIR/fault-<name>.json when the test ends (and rendered as <prefix>-fault-<name>.png). The test
// then marks its fault window (rec.Mark) and feeds requests in (probeAdmission, recordWrites, or rec.Observe with
// outcomeOf). nil when recording is off; every call on a nil recorder does nothing.
func recordFault(t *testing.T, name, title string) *evidence.FaultRecorder {
	t.Helper()
	rec := evidence.NewFault("fault-"+name, title)
	if rec == nil {
		return nil
	}
	// Registered first, so it runs after the cleanups of everything started later (the probers among them).
	t.Cleanup(func() {
		p, err := rec.Write(evidence.Dir())
		if err != nil {
			t.Errorf("writing the evidence: %v", err)
			return
		}
		t.Logf("evidence: %s", p)
	})
	return rec
}

// outcomeOf classifies a write's error: admitted, denied by our webhook's verdict, or failed in any other way.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return evidence.OK
	case devstack.IsWebhookDenial(err):
		return evidence.Denied
	default:
		return evidence.Failed
	}
}

// probeAdmission keeps n probers calling do (each call bounded to 5 s), each pausing between calls, and records every
// call in rec, until the returned stop is called (also at the test's end). A call cut short by stop is not recorded. With rec nil it starts
// nothing: the probes exist only for the chart, never for the test's verdict.
func probeAdmission(t *testing.T, rec *evidence.FaultRecorder, n int, pause time.Duration, do func(ctx context.Context) error) (stop func()) {
	if rec == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				// 5 s is the webhook's own timeoutSeconds: a call still unanswered by then is a failure (a request
				// held by an API server that is still starting up, for one), and it shows on the chart as such.
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				err := do(cctx)
				ccancel()
				if ctx.Err() != nil {
					return
				}
				rec.Observe(start, time.Since(start), outcomeOf(err))
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		})
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// writeSample is one write of runWritersUntil, kept (only while evidence is recorded) for the time series.
type writeSample struct {
	at      time.Time
	latency time.Duration
	outcome string
}

// recordWrites adds every write of r to rec.
func recordWrites(rec *evidence.FaultRecorder, r *writeResult) {
	if rec == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.samples {
		rec.Observe(s.at, s.latency, s.outcome)
	}
}

// recordLoad starts the evidence of TestLoadThroughAPIServer (machine and load average now) and returns the
// function that writes it, APEIRO_EVIDENCE_DIR/load-through-apiserver.json, once both phases have run: the client
// latency histogram of each phase and the growth of the API server's admission histogram per webhook.
func recordLoad(t *testing.T, writers int) func(with, without *writeResult, before, after map[string]histogram) {
	if !evidence.Enabled() {
		return func(*writeResult, *writeResult, map[string]histogram, map[string]histogram) {}
	}
	ev := evidence.Load{Kind: evidence.KindLoad, Name: "load-through-apiserver", Started: time.Now().UTC(), Machine: evidence.CurrentMachine(),
		Title: "writes through the real kube-apiserver, with and without our webhooks registered"}
	return func(with, without *writeResult, before, after map[string]histogram) {
		t.Helper()
		const withName = "with webhooks"
		for _, ph := range []struct {
			name string
			r    *writeResult
		}{{withName, with}, {"without webhooks", without}} {
			ph.r.mu.Lock()
			lat := evidence.Histogram(ph.r.latencies)
			ph.r.mu.Unlock()
			ev.Phases = append(ev.Phases, evidence.Phase{Name: ph.name, Writers: writers, Seconds: ph.r.elapsed.Seconds(),
				Admitted: ph.r.ok.Load(), Denied: ph.r.denied.Load(), Failed: ph.r.failed.Load(), Latency: lat})
		}
		for _, name := range slices.Sorted(maps.Keys(after)) {
			d := after[name].minus(before[name])
			if d.count <= 0 {
				continue
			}
			h := evidence.AdmissionHistogram{Webhook: name, Phase: withName, Count: d.count}
			for _, le := range slices.Sorted(maps.Keys(d.buckets)) {
				if !math.IsInf(le, 1) {
					h.Buckets = append(h.Buckets, evidence.PromBucket{LeSeconds: le, Cumulative: d.buckets[le]})
				}
			}
			ev.Admission = append(ev.Admission, h)
		}
		ev.Machine.LoadEnd = evidence.LoadAverage()
		p, err := evidence.Write(evidence.Dir(), ev.Name, ev)
		if err != nil {
			t.Errorf("writing the evidence: %v", err)
			return
		}
		t.Logf("evidence: %s", p)
	}
}

// evidenceLead is how long a fault test lets its probers run before the fault and after the recovery, so the chart
// shows the normal latency on both sides of the window: 2 s while evidence is recorded, nothing otherwise.
func evidenceLead(rec *evidence.FaultRecorder) time.Duration {
	if rec == nil {
		return 0
	}
	return 2 * time.Second
}

// evidenceClient is the probers' own client: no client-side rate limit (so they never slow the test's own client
// down) and warnings dropped (the keystore probes are admitted with one each during the outage); nil when evidence
// is off.
func evidenceClient(t *testing.T, rec *evidence.FaultRecorder) client.Client {
	t.Helper()
	if rec == nil {
		return nil
	}
	rc := rest.CopyConfig(env.stack.ControlPlane.RESTConfig())
	rc.QPS, rc.Burst = -1, 0
	rc.Timeout = 30 * time.Second
	rc.WarningHandler = rest.NoWarnings{}
	c, err := client.New(rc, client.Options{Scheme: env.scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
