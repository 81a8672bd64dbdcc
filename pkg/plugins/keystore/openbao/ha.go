package openbao

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// ServerState is a node's role as sys/health reports it.
type ServerState string

// Server states. A standby (sys/health 429) and a performance standby (473) are usable: they forward requests to the
// active node over the cluster port (or, when forwarding fails, redirect the client, which follows); the plugin
// needs no list of nodes and no leader discovery of its own.
const (
	StateActive             ServerState = "active"
	StateStandby            ServerState = "standby"
	StatePerformanceStandby ServerState = "performance-standby"
	StateSealed             ServerState = "sealed"
	StateUninitialized      ServerState = "uninitialized"
)

// noActiveNode recognises the answers of a standby that cannot reach an active node: a standby whose active node is
// gone ("local node not active but active cluster node not found", HTTP 500) and the redirect fallback without a
// leader ("no active ... instance found", 503). Both end when the cluster elects a leader.
func noActiveNode(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "active cluster node not found") || strings.Contains(m, "no active vault instance") ||
		strings.Contains(m, "no active openbao instance") || strings.Contains(m, "node is not active")
}

// state reads sys/health (and, on a standby, sys/leader) of the configured address.
func (b *backend) state(ctx context.Context) (ServerState, *Error) {
	if err := b.sess.lock(ctx); err != nil {
		return "", mapBao(ctx, "sys/health", err)
	}
	if b.sess.client == nil {
		c, err := b.sess.build()
		if err != nil {
			b.sess.unlock()
			return "", mapBao(ctx, "sys/health", err)
		}
		b.sess.client = c
	}
	c := b.sess.client
	b.sess.unlock()
	h, err := c.Sys().HealthWithContext(ctx)
	if err != nil {
		return "", mapBao(ctx, "sys/health", err)
	}
	switch {
	case !h.Initialized:
		return StateUninitialized, &Error{Code: codes.Unavailable, Kind: keychain.ErrUnavailable, Cause: ErrUninitialized, Msg: "OpenBao is not initialised"}
	case h.Sealed:
		return StateSealed, &Error{Code: codes.Unavailable, Kind: keychain.ErrUnavailable, Cause: ErrSealed, Msg: "OpenBao is sealed"}
	case !h.Standby && !h.PerformanceStandby:
		return StateActive, nil
	}
	st := StateStandby
	if h.PerformanceStandby {
		st = StatePerformanceStandby
	}
	// A standby is usable only while it knows an active node to forward to.
	l, err := c.Sys().LeaderWithContext(ctx)
	if err != nil {
		return st, mapBao(ctx, "sys/leader", err)
	}
	if l.LeaderAddress == "" {
		return st, &Error{Code: codes.Unavailable, Kind: keychain.ErrUnavailable, Cause: ErrStandby,
			Msg: "OpenBao standby has no active node to forward to (leader election in progress?)"}
	}
	return st, nil
}

// health is state without the role: nil when the server serves requests (active, or a standby with an active node);
// otherwise an Unavailable error naming why (ErrSealed, ErrUninitialized, ErrStandby).
func (b *backend) health(ctx context.Context) *Error {
	_, e := b.state(ctx)
	return e
}

// ServerState reports the configured node's role (active, standby, performance-standby, sealed, uninitialized) and,
// like Health, an Unavailable error when it cannot serve requests.
func (w *Wrapper) ServerState(ctx context.Context) (ServerState, error) {
	ctx, cancel := w.be.withBudget(ctx)
	defer cancel()
	st, e := w.be.state(ctx)
	if e != nil {
		return st, e
	}
	return st, nil
}

// failover recognises a call that the configured node redirected to its active node and that then failed to
// connect: a standby still names its old leader for a moment after that leader died. Reporting "unreachable" with
// the dead leader's address would send an operator to the wrong node, so the error says what happens: the
// configured node is a standby whose active node is gone (ErrStandby) until the cluster elects a new one.
func (b *backend) failover(op string, err error) *Error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return nil
	}
	got, perr := url.Parse(ue.URL)
	want, werr := url.Parse(b.cfg.address())
	if perr != nil || werr != nil || got.Host == "" || strings.EqualFold(got.Host, want.Host) {
		return nil
	}
	return &Error{Code: codes.Unavailable, Kind: keychain.ErrUnavailable, Cause: ErrStandby,
		Msg: fmt.Sprintf("%s: OpenBao at %s forwarded the call to its active node %s, which does not answer (failover in progress?)", op, want.Host, got.Host)}
}
