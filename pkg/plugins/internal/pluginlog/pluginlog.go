// Package pluginlog holds a plugin's logger. The plugin-sdk hands the logger over during Init (api.NeedsLogger),
// possibly while RPCs already run, so it is swapped atomically; before that, logs are discarded.
package pluginlog

import (
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// Holder is embedded in a plugin; its zero value logs nowhere.
type Holder struct{ l atomic.Pointer[hclog.Logger] }

// SetLogger implements api.NeedsLogger.
func (h *Holder) SetLogger(l hclog.Logger) {
	if l != nil {
		h.l.Store(&l)
	}
}

// Log returns the current logger.
func (h *Holder) Log() hclog.Logger {
	if l := h.l.Load(); l != nil {
		return *l
	}
	return hclog.NewNullLogger()
}
