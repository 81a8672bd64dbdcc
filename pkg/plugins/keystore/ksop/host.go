package ksop

import (
	"context"
	"log/slog"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"
)

// Config is a parsed plugin configuration that knows which keys its parser ignored.
type Config interface {
	IgnoredKeys() keystoreconfig.Warnings
}

// Host is what every keystore plugin (management and operations alike) embeds: the backend built from its current
// configuration, and the Configure and Close RPCs. Configure builds a new backend and swaps it in whole, so an RPC
// in flight finishes on the backend it loaded and never sees half a configuration.
type Host[C Config, B any] struct {
	configv1.UnimplementedConfigServer

	be         atomic.Pointer[B]
	log        *slog.Logger
	backend    string
	pluginType string
	parse      func(string) (C, error)
	build      func(C) *B
}

// Init sets the host up with the empty configuration (nothing is contacted until the first call). backend is the
// short name ("aws") used in build info and log lines; pluginType is Provider or Operations.
func (h *Host[C, B]) Init(backend, pluginType string, parse func(string) (C, error), build func(C) *B) {
	h.log, h.backend, h.pluginType, h.parse, h.build = slog.Default(), backend, pluginType, parse, build
	cfg, _ := parse("")
	h.be.Store(build(cfg))
}

// Load is the current backend.
func (h *Host[C, B]) Load() *B { return h.be.Load() }

// Store replaces the backend (tests use it to plant a prepared one).
func (h *Host[C, B]) Store(b *B) { h.be.Store(b) }

// Configure implements configv1.ConfigServer: a configuration that does not parse is InvalidArgument and the running
// one stays; ignored keys are logged by name (never by value: they may sit next to secrets).
func (h *Host[C, B]) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	cfg, err := h.parse(req.GetYamlConfiguration())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if w := cfg.IgnoredKeys(); len(w) > 0 {
		h.log.Warn(h.backend+" keystore: ignored unknown configuration keys", "keys", w.String())
	}
	h.be.Store(h.build(cfg))
	return &configv1.ConfigureResponse{BuildInfo: BuildInfo(h.backend, h.pluginType)}, nil
}

// Close implements io.Closer (the plugin's Deinit). A backend holds no resources beyond idle connections and pooled
// sessions, which live as long as the process.
func (h *Host[C, B]) Close() error { return nil }
