package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// entry is one path of a layer. Exactly one of Dir, Link, Data or Src describes it.
type entry struct {
	Path     string // without leading slash
	Mode     int64
	UID, GID int
	Dir      bool
	Link     string // symlink target
	Data     []byte // file content
	Src      string // or: file content read from this path
}

// layerFS collects the entries of one layer; writing it is deterministic: entries sorted by path, every parent
// directory present (root-owned 0755 unless added explicitly), one fixed mtime, numeric owners only.
type layerFS struct {
	entries map[string]entry
}

func newLayerFS() *layerFS { return &layerFS{entries: map[string]entry{}} }

func (l *layerFS) add(e entry) error {
	e.Path = strings.TrimPrefix(path.Clean("/"+e.Path), "/")
	if e.Path == "" {
		return fmt.Errorf("empty path")
	}
	if old, ok := l.entries[e.Path]; ok && !(old.Dir && e.Dir) {
		return fmt.Errorf("%s added twice", e.Path)
	}
	l.entries[e.Path] = e
	for d := path.Dir(e.Path); d != "."; d = path.Dir(d) {
		if _, ok := l.entries[d]; !ok {
			l.entries[d] = entry{Path: d, Mode: 0o755, Dir: true}
		}
	}
	return nil
}

func (l *layerFS) paths() []string {
	ps := make([]string, 0, len(l.entries))
	for p := range l.entries {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// writeGzip writes the layer as a gzip-compressed tar to file. compress/gzip produces the same bytes for the
// same input and level, and the header carries no name or time, so the layer digest depends on the content only.
func (l *layerFS) writeGzip(file string, mtime time.Time, level int) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, level)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	for _, p := range l.paths() {
		e := l.entries[p]
		h := &tar.Header{Name: p, Mode: e.Mode, Uid: e.UID, Gid: e.GID, ModTime: mtime, Format: tar.FormatPAX}
		var src io.ReadCloser
		switch {
		case e.Dir:
			h.Typeflag, h.Name = tar.TypeDir, p+"/"
		case e.Link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.Link
		case e.Src != "":
			s, err := os.Open(e.Src)
			if err != nil {
				return err
			}
			st, err := s.Stat()
			if err != nil {
				s.Close()
				return err
			}
			h.Typeflag, h.Size, src = tar.TypeReg, st.Size(), s
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if src != nil {
			_, err := io.Copy(tw, src)
			src.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		} else if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.Data); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}
