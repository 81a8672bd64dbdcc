package main

import (
	"context"
	"flag"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

func TestShutdownDelayFlag(t *testing.T) {
	cases := []struct {
		args []string
		want time.Duration
	}{
		{nil, DefaultShutdownDelay},
		{[]string{"--shutdown-delay=15s"}, 15 * time.Second},
		{[]string{"--shutdown-delay=0"}, 0},
	}
	for _, tc := range cases {
		var o options
		fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
		o.bind(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if o.shutdown.delay != tc.want || o.shutdown.isDraining() {
			t.Errorf("%v: delay %s draining %v, want %s and not draining", tc.args, o.shutdown.delay, o.shutdown.isDraining(), tc.want)
		}
	}
	if DefaultShutdownDelay != 5*time.Second {
		t.Errorf("the documented default is 5s, got %s", DefaultShutdownDelay)
	}
	for _, bad := range []string{"--shutdown-delay=soon", "--shutdown-delay=-5s", "--shutdown-delay="} {
		if err := newFlags().Parse([]string{bad}); err == nil {
			t.Errorf("%s was accepted", bad)
		}
	}
}

func newFlags() *flag.FlagSet {
	var o options
	f := flag.NewFlagSet("webhook", flag.ContinueOnError)
	f.SetOutput(devNull{})
	o.bind(f)
	return f
}

type devNull struct{}

func (devNull) Write(p []byte) (int, error) { return len(p), nil }

// The sequence after a stop signal: draining (readiness fails) at once, the context ends only after the delay, a
// second signal exits with status 1.
func TestShutdownSequence(t *testing.T) {
	const delay = 300 * time.Millisecond
	type step struct {
		signals        int // signals sent
		wantCancelled  bool
		wantExitStatus int // -1: no exit
	}
	cases := []struct {
		name  string
		delay time.Duration
		steps []step
	}{
		{"no signal: serving", delay, []step{{0, false, -1}}},
		{"SIGTERM: draining, then cancelled after the delay", delay, []step{{1, true, -1}}},
		{"second signal during the delay exits 1", time.Hour, []step{{2, true, 1}}},
		{"second signal after the delay exits 1", delay, []step{{1, true, -1}, {1, true, 1}}},
		{"delay 0: cancelled at once", 0, []step{{1, true, -1}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := shutdownOptions{delay: tc.delay}
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			s.bind(fs)
			s.delay = tc.delay
			sigs := make(chan os.Signal, 2)
			exits := make(chan int, 1)
			parent, stop := context.WithCancel(context.Background())
			defer stop()
			ctx := s.onSignal(parent, sigs, logr.Discard(), func(code int) { exits <- code })
			for _, st := range tc.steps {
				sent := time.Now()
				for range st.signals {
					sigs <- syscall.SIGTERM
				}
				if st.signals > 0 {
					waitFor(t, "draining", s.isDraining)
					if time.Since(sent) > tc.delay/2 && tc.delay > 0 {
						t.Errorf("draining began %s after the signal; want at once", time.Since(sent))
					}
				}
				if !st.wantCancelled {
					select {
					case <-ctx.Done():
						t.Fatal("context ended without a signal")
					case <-time.After(2 * delay):
					}
					if s.isDraining() {
						t.Fatal("draining without a signal")
					}
					continue
				}
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Second):
					t.Fatal("context not cancelled")
				}
				if elapsed := time.Since(sent); st.wantExitStatus < 0 && st.signals == 1 && elapsed < tc.delay {
					t.Errorf("cancelled %s after the signal, before the %s delay", elapsed, tc.delay)
				}
				if st.wantExitStatus >= 0 {
					select {
					case code := <-exits:
						if code != st.wantExitStatus {
							t.Errorf("exit(%d), want %d", code, st.wantExitStatus)
						}
					case <-time.After(5 * time.Second):
						t.Fatal("second signal did not exit")
					}
				}
			}
			select {
			case code := <-exits:
				t.Errorf("unexpected exit(%d)", code)
			default:
			}
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// The Deployment gives a stopping replica enough time: the kubelet's SIGKILL must come after the shutdown delay,
// the drain of requests in flight and a margin for the manager's own shutdown, preStop included if one is set. The
// chart is held to deploy/base by deploy/chart's lockstep test.
func TestDeploymentGracePeriod(t *testing.T) {
	b, err := os.ReadFile("../../deploy/base/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	if err := yaml.UnmarshalStrict(b, &dep); err != nil {
		t.Fatal(err)
	}
	spec := dep.Spec.Template.Spec
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("no terminationGracePeriodSeconds: the default 30 s is too short for --shutdown-delay plus the drain")
	}
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	c := spec.Containers[0]
	var o options
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	fs.SetOutput(devNull{})
	o.bind(fs)
	var ours []string
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--shutdown-delay") {
			ours = append(ours, a)
		}
	}
	if err := fs.Parse(ours); err != nil || len(ours) != 1 {
		t.Fatalf("deploy/base must set --shutdown-delay once (%q): %v", ours, err)
	}
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	const managerMargin = 10 * time.Second // lease release, informers, plugins
	if need := preStop + o.shutdown.delay + o.shutdown.drainTimeout() + managerMargin; grace < need {
		t.Errorf("terminationGracePeriodSeconds %s < preStop %s + shutdown delay %s + drain %s + margin %s",
			grace, preStop, o.shutdown.delay, o.shutdown.drainTimeout(), managerMargin)
	}
	t.Logf("grace %s: preStop %s, --shutdown-delay %s, drain <= %s", grace, preStop, o.shutdown.delay, o.shutdown.drainTimeout())
}
