package openbao

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestStandbyWithoutActiveNode: the answers of a standby that lost its active node become Unavailable + ErrStandby,
// and the health mapping reports the standby role (the real failover is TestStandbyFollowing).
func TestStandbyWithoutActiveNode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   int
		msg    string
		leader string
	}{
		{"forwarding without an active node", http.StatusInternalServerError, "local node not active but active cluster node not found", ""},
		{"redirect without an active node", http.StatusServiceUnavailable, "no active Vault instance found", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := fakeBao(t, func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/v1/sys/health":
					w.WriteHeader(299) // the client asks for standbycode=299
					_ = json.NewEncoder(w).Encode(map[string]any{"initialized": true, "sealed": false, "standby": true})
				case "/v1/sys/leader":
					_ = json.NewEncoder(w).Encode(map[string]any{"ha_enabled": true, "leader_address": tc.leader})
				default:
					w.WriteHeader(tc.code)
					_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{tc.msg}})
				}
			})
			w := NewWrapper(fakeConfig(t, addr))
			_, err := w.Wrap(context.Background(), tenantStruct("acme"), "k", []byte("x"), nil)
			if !errors.Is(err, ErrStandby) || status.Code(err) != codes.Unavailable {
				t.Fatalf("Wrap = %v, want Unavailable + ErrStandby", err)
			}
			st, err := w.ServerState(context.Background())
			if st != StateStandby || !errors.Is(err, ErrStandby) {
				t.Fatalf("ServerState = %q, %v; want standby + ErrStandby", st, err)
			}
		})
	}
	t.Run("standby with an active node is healthy", func(t *testing.T) {
		addr, _ := fakeBao(t, func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/v1/sys/health":
				w.WriteHeader(299) // performancestandbycode=299
				_ = json.NewEncoder(w).Encode(map[string]any{"initialized": true, "standby": true, "performance_standby": true})
			case "/v1/sys/leader":
				_ = json.NewEncoder(w).Encode(map[string]any{"ha_enabled": true, "leader_address": "https://active:8200"})
			}
		})
		w := NewWrapper(fakeConfig(t, addr))
		if st, err := w.ServerState(context.Background()); st != StatePerformanceStandby || err != nil {
			t.Fatalf("ServerState = %q, %v", st, err)
		}
		if err := w.Health(context.Background()); err != nil {
			t.Fatalf("Health = %v", err)
		}
	})
}
