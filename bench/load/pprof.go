package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// profiler fetches CPU, mutex and block profiles from the webhook's pprof endpoint (--pprof-bind-address) while a
// phase runs. Mutex and block profiles are deltas over the same window (?seconds=).
type profiler struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

func startProfiles(ctx context.Context, addr, dir string, phase time.Duration) *profiler {
	p := &profiler{}
	secs := max(int((phase - time.Second).Seconds()), 1)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.errs = append(p.errs, err)
		return p
	}
	for _, name := range []string{"profile", "mutex", "block"} {
		p.wg.Go(func() {
			if err := fetchProfile(ctx, fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", addr, name, secs), filepath.Join(dir, name+".pb.gz"), secs); err != nil {
				p.mu.Lock()
				p.errs = append(p.errs, fmt.Errorf("%s: %w", name, err))
				p.mu.Unlock()
			}
		})
	}
	return p
}

func fetchProfile(ctx context.Context, url, path string, secs int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs+30)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func (p *profiler) wait() error {
	p.wg.Wait()
	return errors.Join(p.errs...)
}
