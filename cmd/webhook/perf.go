package main

import (
	"flag"
	"fmt"
	"runtime"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
)

// Flags that trade nothing by default and exist for measuring and tuning (docs/performance.md, "Side-by-side load").
var (
	// pprofBindAddress serves net/http/pprof for profiling under load (bench/load uses it). Off by default: profiles
	// reveal internals and cost CPU, so it is never on in deploy/.
	pprofBindAddress = flag.String("pprof-bind-address", "", "Address of the pprof endpoints (e.g. 127.0.0.1:6060); empty disables them. Also turns on mutex and block profiling.")
	// liveReadMaxAge relaxes the freshness of the live reads made on creates (admission.BatchedReader.MaxAge).
	liveReadMaxAge = flag.Duration("live-read-max-age", defaultLiveReadMaxAge, "How much older than a request a shared live read of a referenced Tenant or Account may be. Applies while the in-use finalizer runs, which makes the window harmless (a create that slips in only postpones the parent's delete); without it the default is 0 (every answer reflects the API server after the request arrived). At most a quarter of --in-use-grace; see docs/admission.md.")
)

// pprofAddress returns the configured pprof address and, when profiling is on, samples mutex contention and blocking
// so that the mutex and block profiles are not empty.
func pprofAddress() string {
	if *pprofBindAddress != "" {
		runtime.SetMutexProfileFraction(10)
		runtime.SetBlockProfileRate(int(10 * time.Microsecond)) // one sample per 10 µs blocked
	}
	return *pprofBindAddress
}

// defaultLiveReadMaxAge: short against the in-use grace (10 s), long against the gap between creates under load, so
// that a busy tenant or Account costs about four GETs a second instead of one or two per create (docs/performance.md).
const defaultLiveReadMaxAge = 250 * time.Millisecond

// liveReader is the Directory's live reader: concurrent reads of one object share API server round trips, and
// while the in-use finalizer runs, reads up to the configured age are shared too.
func liveReader(r client.Reader, inUse inUseOptions, finalizerRuns bool) (client.Reader, error) {
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "live-read-max-age" })
	age, err := liveReadAge(*liveReadMaxAge, explicit, inUse, finalizerRuns)
	if err != nil {
		return nil, err
	}
	br := admission.NewBatchedReader(r)
	br.MaxAge = age
	return br, nil
}

// liveReadAge is the effective --live-read-max-age. A read shared across that window may miss a delete made within
// it; the in-use finalizer keeps such a parent until the create that slipped in is gone, provided the create is
// stored before the finalizer's grace ends (a window well under the grace leaves room for the webhook timeout).
// Without the finalizer nothing would hold the parent, so the default falls back to 0 and only an explicit value
// (an operator's choice) relaxes it.
func liveReadAge(age time.Duration, explicit bool, inUse inUseOptions, finalizerRuns bool) (time.Duration, error) {
	switch {
	case age < 0:
		return 0, fmt.Errorf("--live-read-max-age must not be negative, got %s", age)
	case !finalizerRuns:
		if explicit {
			return age, nil
		}
		return 0, nil
	case age > inUse.grace/4:
		return 0, fmt.Errorf("--live-read-max-age %s must stay at most a quarter of --in-use-grace (%s)", age, inUse.grace)
	}
	return age, nil
}
