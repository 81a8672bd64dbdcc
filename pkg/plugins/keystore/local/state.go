package local

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// backend is one configuration's view: config, record store and secrets.
type backend struct {
	cfg    *Config
	st     store
	secret []byte
	kek    []byte
}

// base holds what both plugins share: configuration swapped atomically by
// Configure (which CMK may call concurrently with other RPCs), a memory
// store that survives reconfiguration, and the logger.
type base struct {
	kind string

	mu       sync.RWMutex
	be       *backend
	mem      *memStore
	fallback []byte
	log      hclog.Logger
	now      func() time.Time
}

func newBase(kind string) *base {
	fb := make([]byte, 32)
	if _, err := rand.Read(fb); err != nil {
		panic(fmt.Sprintf("local keystore: no randomness: %v", err))
	}
	b := &base{kind: kind, mem: newMemStore(), fallback: fb, log: hclog.NewNullLogger(), now: time.Now}
	if err := b.configure(""); err != nil {
		panic(err) // the empty configuration is always valid
	}
	return b
}

func (b *base) configure(yamlConfiguration string) error {
	cfg, err := ParseConfig(yamlConfiguration)
	if err != nil {
		return err
	}
	secret, where, err := cfg.resolveSecret(b.fallback)
	if err != nil {
		return fmt.Errorf("local keystore configuration: %w", err)
	}
	be := &backend{cfg: cfg, secret: secret, kek: kek(secret)}
	if cfg.Dir == "" {
		be.st = b.mem
	} else {
		be.st = &dirStore{dir: cfg.Dir}
	}
	b.mu.Lock()
	b.be = be
	log := b.log
	b.mu.Unlock()
	switch {
	case where.legacyKDF:
		log.Warn("local keystore: the secret passphrase is hashed without a KDF because this directory holds keys from before argon2id; re-create the directory to use argon2id", "plugin", b.kind)
	case where.source == "legacy-file":
		log.Warn("local keystore: the sealing secret lies inside the key directory; set `secret:` to a separately mounted secret", "plugin", b.kind, "file", where.path)
	case where.source == "dev-file":
		log.Warn("local keystore: development sealing secret next to the key directory; set `secret:` to a separately mounted secret in production", "plugin", b.kind, "file", where.path)
	}
	if len(cfg.warnings) > 0 {
		log.Warn("local keystore configuration: ignored unknown keys", "plugin", b.kind, "keys", cfg.warnings.String())
	}
	if cfg.Dir == "" {
		log.Info("local keystore configured in memory: keys are lost when the plugin stops", "plugin", b.kind)
	} else {
		log.Info("local keystore configured", "plugin", b.kind, "dir", cfg.Dir)
	}
	return nil
}

func (b *base) backend() *backend {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.be
}

// SetLogger implements api.NeedsLogger (called by the SDK during Init).
func (b *base) SetLogger(l hclog.Logger) {
	b.mu.Lock()
	b.log = l
	b.mu.Unlock()
}

func (b *base) logger() hclog.Logger {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.log
}

// buildInfo is returned from Configure and surfaces in CMK's build info.
func buildInfo(kind string) *string {
	s, _ := json.Marshal(map[string]string{"plugin": "apeiro-keystore-local", "service": kind})
	v := string(s)
	return &v
}

func internalErr(what string, err error) error {
	return status.Errorf(codes.Internal, "local keystore: %s: %v", what, err)
}
