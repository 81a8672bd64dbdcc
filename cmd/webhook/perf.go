package main

import (
	"flag"
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
	liveReadMaxAge = flag.Duration("live-read-max-age", 0, "How much older than a request a shared live read of a referenced Tenant or Account may be (0: never older, every answer reflects the API server after the request arrived). A few tens of milliseconds save most API server round trips under load, at the price of that window; see docs/admission.md.")
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

// liveReader is the Directory's live reader: concurrent reads of one object share API server round trips.
func liveReader(r client.Reader) client.Reader {
	br := admission.NewBatchedReader(r)
	br.MaxAge = max(*liveReadMaxAge, 0)
	return br
}
