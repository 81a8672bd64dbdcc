package devstack

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
)

// Replica is a second webhook process next to the stack's own, as a Deployment with two replicas runs them: same
// binary, flags, serving certificate and API server, its own ports and in-memory state.
type Replica struct {
	Process *controlplane.Process
	// URL is https://127.0.0.1:<port>; it serves with the stack's certificate (trusted by WebhookCAPEM).
	URL string
	// HealthAddr is host:port of its /healthz and /readyz.
	HealthAddr string
}

// Endpoint is the replica as a Service's backend: its webhook address, probed on /readyz.
func (r *Replica) Endpoint() Endpoint {
	return Endpoint{Addr: strings.TrimPrefix(r.URL, "https://"), Health: r.HealthAddr}
}

// StartReplica starts another webhook process with the stack's settings and waits until it is ready. It is not
// registered: point the webhook configurations at it (or at a Service in front of several) with RegisterAt. The
// caller stops it. extraArgs come after the stack's WebhookArgs (a repeated flag takes its last value).
//
// A replica stops without a --shutdown-delay unless extraArgs set one: it is stopped when its test ends, with no
// Service in front still sending it traffic, and the delay would only add to every test's teardown.
func (s *Stack) StartReplica(ctx context.Context, name string, extraArgs ...string) (*Replica, error) {
	ports, err := controlplane.FreePorts(3)
	if err != nil {
		return nil, err
	}
	health := fmt.Sprintf("127.0.0.1:%d", ports[2])
	args := append([]string{
		"--kubeconfig=" + s.ControlPlane.KubeconfigPath,
		"--cert-dir=" + filepath.Join(s.opts.WorkDir, "webhook-certs"),
		"--webhook-host=127.0.0.1",
		fmt.Sprintf("--webhook-port=%d", ports[0]),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[1]),
		"--health-probe-bind-address=" + health,
		"--region-source=sis",
		"--shutdown-delay=0",
	}, s.opts.WebhookArgs...)
	args = append(args, extraArgs...)
	env := append([]string{"APEIRO_LOCAL_KEYSTORE_DIR=" + filepath.Join(s.opts.WorkDir, "keystore-local")}, s.opts.WebhookEnv...)
	p, err := controlplane.StartProcess(name, s.opts.WebhookBin, args, filepath.Join(s.opts.WorkDir, name+".log"), env...)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	err = controlplane.WaitReady(ctx, s.opts.StartTimeout, p, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+health+"/readyz", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
			return fmt.Errorf("/readyz: %s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		return nil
	})
	if err != nil {
		_ = p.Stop(s.opts.StopGrace)
		return nil, fmt.Errorf("devstack: waiting for webhook replica %s: %w", name, err)
	}
	return &Replica{Process: p, URL: fmt.Sprintf("https://127.0.0.1:%d", ports[0]), HealthAddr: health}, nil
}

// RegisterAt points every webhook configuration of deploy/base at baseURL (which must serve with a certificate
// signed by WebhookCAPEM) and waits until the webhook answers through it. InstallWebhookConfigurations points them
// back at the stack's own process.
func (s *Stack) RegisterAt(ctx context.Context, baseURL string) error {
	cfgs, _, err := RenderWebhookConfigurations(filepath.Join(s.opts.Root, "deploy", "base"), baseURL, s.WebhookCAPEM)
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	for _, o := range cfgs {
		if err := Apply(ctx, s.Client, o); err != nil {
			return fmt.Errorf("devstack: registering webhook configuration at %s: %w", baseURL, err)
		}
	}
	return s.WaitWebhookAnswering(ctx)
}

// WebhookCertFiles are the stack's serving certificate and key (shared by its replicas).
func (s *Stack) WebhookCertFiles() (certFile, keyFile string) {
	dir := filepath.Join(s.opts.WorkDir, "webhook-certs")
	return filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
}

// Endpoint is one backend of a Service.
type Endpoint struct {
	// Addr is host:port of the webhook listener.
	Addr string
	// Health is host:port serving /readyz; empty probes Addr with a TCP connect instead.
	Health string
}

// Service stands in for a Kubernetes Service (a ClusterIP with kube-proxy) in front of webhook replicas. It accepts
// TCP connections and splices each one to the next ready endpoint, round robin per connection: kube-proxy balances
// connections, not requests, and a kept-alive connection stays with its endpoint for as long as it lives, even
// after the endpoint has left the Service. Readiness follows the endpoint the way an EndpointSlice does:
//
//   - a readiness probe (GET /readyz every 100 ms, 1 s timeout; a TCP connect for an Endpoint without Health) takes
//     an endpoint out of rotation at its first failure and back in at its next success;
//   - Terminate marks an endpoint terminating (its pod has a deletionTimestamp): it gets no new connections again,
//     whatever its probe says;
//   - a dial to an endpoint that has died but is still in rotation is not retried elsewhere: the client's
//     connection is closed, as a connection to a dead pod IP fails.
//
// Only new connections are routed; connections already spliced to an endpoint end when either side closes them.
type Service struct {
	ln     net.Listener
	ctx    context.Context // ends at Close; bounds the probes
	cancel context.CancelFunc
	wg     sync.WaitGroup
	probe  *http.Client

	mu        sync.Mutex
	endpoints []Endpoint
	state     map[string]*endpointState
	next      int
}

type endpointState struct {
	ready, terminating bool
	droppedAt          time.Time // first time it left rotation
	conns, active      int       // connections routed to it; of those, still open
}

// NewService listens on a free loopback port and serves the endpoints, each taken as ready (StartReplica returns
// ready replicas) until its first probe says otherwise. Close stops it.
func NewService(endpoints ...Endpoint) (*Service, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("devstack: service listener: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		ln: ln, ctx: ctx, cancel: cancel, state: map[string]*endpointState{},
		// A new connection per probe, as the kubelet's: a dead process fails at connect.
		probe: &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.serve() }()
	for _, e := range endpoints {
		s.Add(e)
	}
	return s, nil
}

// Addr is the Service's host:port.
func (s *Service) Addr() string { return s.ln.Addr().String() }

// Add puts a (ready) endpoint into the Service, as a new pod joining it.
func (s *Service) Add(e Endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.state[e.Addr]; ok {
		return
	}
	s.endpoints = append(s.endpoints, e)
	s.state[e.Addr] = &endpointState{ready: true}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.probeLoop(s.ctx, e) }()
}

// Terminate takes the endpoint at addr out of rotation for good, as the endpoints controller does for a pod being
// deleted at the moment the kubelet is told to stop it.
func (s *Service) Terminate(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.state[addr]; ok {
		st.terminating = true
		s.dropLocked(st)
	}
}

func (s *Service) dropLocked(st *endpointState) {
	if st.ready && st.droppedAt.IsZero() {
		st.droppedAt = time.Now()
	}
	st.ready = false
}

// Ready reports whether the endpoint at addr gets new connections.
func (s *Service) Ready(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.state[addr]
	return ok && st.ready && !st.terminating
}

// Served is the number of connections routed to each endpoint so far.
func (s *Service) Served() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for a, st := range s.state {
		out[a] = st.conns
	}
	return out
}

// Active is the number of connections to the endpoint at addr that are open now.
func (s *Service) Active(addr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.state[addr]; ok {
		return st.active
	}
	return 0
}

// WaitDropped waits until the endpoint at addr has left rotation (probe failure or Terminate) and returns when it
// first did.
func (s *Service) WaitDropped(addr string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		var at time.Time
		if st, ok := s.state[addr]; ok {
			at = st.droppedAt
		}
		s.mu.Unlock()
		if !at.IsZero() {
			return at, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("devstack: endpoint %s still in rotation after %s", addr, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close stops accepting and probing. Connections already spliced end with their clients or endpoints.
func (s *Service) Close() error {
	s.cancel()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Service) pick() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range s.endpoints {
		e := s.endpoints[s.next%len(s.endpoints)]
		s.next++
		if st := s.state[e.Addr]; st.ready && !st.terminating {
			st.conns++
			st.active++
			return e.Addr
		}
	}
	return ""
}

func (s *Service) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.splice(c)
	}
}

func (s *Service) splice(c net.Conn) {
	defer c.Close()
	addr := s.pick()
	if addr == "" {
		return
	}
	defer func() {
		s.mu.Lock()
		s.state[addr].active--
		s.mu.Unlock()
	}()
	b, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return
	}
	defer b.Close()
	// When either side ends, end both: an endpoint that closes a connection (or dies) closes it for the client too,
	// as it does through kube-proxy.
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(b, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, b); done <- struct{}{} }()
	<-done
}

// probeLoop probes one endpoint until ctx ends; the first failure takes it out of rotation, a success puts it back
// (unless it is terminating).
func (s *Service) probeLoop(ctx context.Context, e Endpoint) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ok := s.probeOnce(ctx, e)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		st := s.state[e.Addr]
		switch {
		case !ok:
			s.dropLocked(st)
		case !st.terminating:
			st.ready = true
		}
		s.mu.Unlock()
	}
}

func (s *Service) probeOnce(ctx context.Context, e Endpoint) bool {
	if e.Health == "" {
		c, err := net.DialTimeout("tcp", e.Addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.Health+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := s.probe.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
