package local

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

var (
	errNotFound = errors.New("not found")
	errExists   = errors.New("already exists")
)

// store keeps opaque records by (kind, instance, id). Two implementations:
// a directory (one 0600 file per record, atomic writes) and memory.
type store interface {
	get(kind, instance, id string) ([]byte, error)
	put(kind, instance, id string, data []byte, create bool) error
	remove(kind, instance, id string) error
	// removeInstance removes every record of the instance except those of kind keep.
	removeInstance(instance, keep string) error
}

type memStore struct {
	mu   sync.Mutex
	data map[string][]byte
}

func newMemStore() *memStore { return &memStore{data: map[string][]byte{}} }

func memKey(kind, instance, id string) string { return kind + "\x00" + instance + "\x00" + id }

func (m *memStore) get(kind, instance, id string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.data[memKey(kind, instance, id)]
	if !ok {
		return nil, errNotFound
	}
	return append([]byte(nil), b...), nil
}

func (m *memStore) put(kind, instance, id string, data []byte, create bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := memKey(kind, instance, id)
	if _, ok := m.data[k]; ok && create {
		return errExists
	}
	m.data[k] = append([]byte(nil), data...)
	return nil
}

func (m *memStore) remove(kind, instance, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.data, memKey(kind, instance, id))
	return nil
}

func (m *memStore) removeInstance(instance, keep string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.data {
		// keys are kind\0instance\0id
		if parts := strings.SplitN(k, "\x00", 3); len(parts) == 3 && parts[1] == instance && parts[0] != keep {
			delete(m.data, k)
		}
	}
	return nil
}

// dirStore layout: <dir>/instances/<hex(instance)>/<kind>/<hex(id)>.json.
// Names are hex-encoded so any ID is a safe file name.
type dirStore struct {
	dir string
	mu  sync.Mutex // serialises create-if-absent within this process
}

func (d *dirStore) path(kind, instance, id string) string {
	return filepath.Join(d.instanceDir(instance), kind, hex.EncodeToString([]byte(id))+".json")
}

func (d *dirStore) instanceDir(instance string) string {
	return filepath.Join(d.dir, "instances", hex.EncodeToString([]byte(instance)))
}

func (d *dirStore) get(kind, instance, id string) ([]byte, error) {
	b, err := os.ReadFile(d.path(kind, instance, id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNotFound
	}
	return b, err
}

func (d *dirStore) put(kind, instance, id string, data []byte, create bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.path(kind, instance, id)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp, err := writeTemp(filepath.Dir(p), data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if create {
		// Link fails if the target exists, which makes create atomic even
		// across processes sharing the directory.
		if err := os.Link(tmp, p); err != nil {
			if errors.Is(err, os.ErrExist) {
				return errExists
			}
			return err
		}
		return syncDir(filepath.Dir(p))
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}

func (d *dirStore) remove(kind, instance, id string) error {
	err := os.Remove(d.path(kind, instance, id))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func (d *dirStore) removeInstance(instance, keep string) error {
	entries, err := os.ReadDir(d.instanceDir(instance))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == keep {
			continue
		}
		if err := os.RemoveAll(filepath.Join(d.instanceDir(instance), e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// writeTemp writes data to a new 0600 temp file in dir and fsyncs it.
func writeTemp(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(name)
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(name)
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(name)
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	_ = f.Sync() // best effort: not every filesystem supports directory fsync
	return nil
}
