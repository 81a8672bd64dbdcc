package devstack

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// backend is a fake replica: a TCP listener that greets each connection with its name and then echoes lines, and
// a /readyz whose answer the test switches.
type backend struct {
	name   string
	ln     net.Listener
	health *httptest.Server
	ready  atomic.Bool
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, ln: ln}
	b.ready.Store(true)
	b.health = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !b.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Write([]byte(name + "\n"))
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					_, _ = c.Write([]byte(sc.Text() + "\n"))
				}
			}()
		}
	}()
	t.Cleanup(b.kill)
	return b
}

func (b *backend) endpoint() Endpoint {
	return Endpoint{Addr: b.ln.Addr().String(), Health: strings.TrimPrefix(b.health.URL, "http://")}
}

// kill makes the backend unreachable, as a killed process: both ports refuse.
func (b *backend) kill() {
	_ = b.ln.Close()
	b.health.CloseClientConnections()
	b.health.Close()
}

// dial opens a connection through svc and returns it with the name of the backend that greeted it ("" when the
// Service closed it at once).
func dial(t *testing.T, svc *Service) (net.Conn, string) {
	t.Helper()
	c, err := net.Dial("tcp", svc.Addr())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return c, ""
	}
	return c, strings.TrimSpace(line)
}

// names opens n connections and returns which backend took each (closing them).
func names(t *testing.T, svc *Service, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		c, name := dial(t, svc)
		got[name]++
		c.Close()
	}
	return got
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServiceFollowsReadiness(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	svc, err := NewService(a.endpoint(), b.endpoint())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	aAddr := a.endpoint().Addr

	if got := names(t, svc, 4); got["a"] != 2 || got["b"] != 2 {
		t.Fatalf("round robin over two ready endpoints: %v", got)
	}

	// A connection made while a is ready stays with a after a leaves rotation (a kept-alive connection does).
	kept, name := dial(t, svc)
	if name != "a" && name != "b" {
		t.Fatalf("greeted by %q", name)
	}
	keptOn := name

	// Readiness fails: no new connections, the open one still works; back in rotation at the next success.
	a.ready.Store(false)
	waitUntil(t, "a dropped after its /readyz failed", func() bool { return !svc.Ready(aAddr) })
	if got := names(t, svc, 4); got["b"] != 4 {
		t.Fatalf("a failing /readyz still got new connections: %v", got)
	}
	if _, err := kept.Write([]byte("still there\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(kept).ReadString('\n'); err != nil || line != "still there\n" {
		t.Fatalf("connection kept on %s broke when a left rotation: %q %v", keptOn, line, err)
	}
	kept.Close()
	if at, err := svc.WaitDropped(aAddr, time.Second); err != nil || at.IsZero() {
		t.Fatalf("WaitDropped: %v %v", at, err)
	}
	a.ready.Store(true)
	waitUntil(t, "a back after /readyz passed", func() bool { return svc.Ready(aAddr) })
	if got := names(t, svc, 4); got["a"] != 2 {
		t.Fatalf("a ready again but not in rotation: %v", got)
	}

	// Terminating: out for good, whatever its probe says.
	svc.Terminate(aAddr)
	time.Sleep(300 * time.Millisecond) // a few passing probes
	if got := names(t, svc, 4); got["b"] != 4 {
		t.Fatalf("a terminating endpoint got new connections: %v", got)
	}

	// A new endpoint joins; a killed one is dropped by its failing probe.
	c := newBackend(t, "c")
	svc.Add(c.endpoint())
	b.kill()
	waitUntil(t, "killed b dropped", func() bool { return !svc.Ready(b.endpoint().Addr) })
	if got := names(t, svc, 3); got["c"] != 3 {
		t.Fatalf("after b was killed: %v, want every connection on c", got)
	}
	served := svc.Served()
	if served[aAddr] == 0 || served[c.endpoint().Addr] != 3 {
		t.Errorf("Served() = %v", served)
	}

	// Nothing ready: the client's connection is closed, not held.
	c.ready.Store(false)
	waitUntil(t, "c dropped", func() bool { return !svc.Ready(c.endpoint().Addr) })
	if got := names(t, svc, 2); got[""] != 2 {
		t.Fatalf("with no ready endpoint: %v, want the connections closed", got)
	}
	waitUntil(t, "no connection open", func() bool { return svc.Active(aAddr)+svc.Active(c.endpoint().Addr) == 0 })
}

// An endpoint without Health is probed with a TCP connect (the probe of the SIGKILL test).
func TestServiceTCPProbe(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	svc, err := NewService(Endpoint{Addr: a.endpoint().Addr}, Endpoint{Addr: b.endpoint().Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	a.ready.Store(false) // not looked at: only the TCP connect counts
	time.Sleep(300 * time.Millisecond)
	if !svc.Ready(a.endpoint().Addr) {
		t.Fatal("TCP-probed endpoint dropped although it accepts connections")
	}
	a.kill()
	start := time.Now()
	at, err := svc.WaitDropped(a.endpoint().Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dropped %s after the kill", at.Sub(start).Round(time.Millisecond))
	if got := names(t, svc, 3); got["b"] != 3 {
		t.Fatalf("after a was killed: %v", got)
	}
}
