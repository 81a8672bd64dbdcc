package main

import (
	"strings"
	"testing"
	"time"
)

// The live-read window applies only while the in-use finalizer runs, and never beyond a quarter of its grace.
func TestLiveReadAge(t *testing.T) {
	on := inUseOptions{enabled: true, grace: 10 * time.Second}
	for _, tc := range []struct {
		name          string
		age           time.Duration
		explicit, fin bool
		want          time.Duration
		err           string
	}{
		{name: "default with the finalizer", age: defaultLiveReadMaxAge, fin: true, want: defaultLiveReadMaxAge},
		{name: "default without the finalizer is strict", age: defaultLiveReadMaxAge, want: 0},
		{name: "explicit without the finalizer is the operator's choice", age: 50 * time.Millisecond, explicit: true, want: 50 * time.Millisecond},
		{name: "explicit zero", age: 0, explicit: true, fin: true, want: 0},
		{name: "a quarter of the grace", age: 2500 * time.Millisecond, explicit: true, fin: true, want: 2500 * time.Millisecond},
		{name: "beyond a quarter of the grace", age: 3 * time.Second, explicit: true, fin: true, err: "quarter of --in-use-grace"},
		{name: "negative", age: -time.Second, explicit: true, fin: true, err: "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := liveReadAge(tc.age, tc.explicit, on, tc.fin)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want an error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
