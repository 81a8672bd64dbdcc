package kcp_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/apeirora/apeiro-cmk/pkg/alerts"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpserver"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/netguard"
)

// receiver is a tenant's webhook endpoint: it records every delivery's JSON payload.
type receiver struct {
	mu   sync.Mutex
	got  []alerts.Payload
	srv  *httptest.Server
	name string
}

func newReceiver(t *testing.T, name string) *receiver {
	r := &receiver{name: name}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(req.Body, 64<<10))
		var p alerts.Payload
		if err := json.Unmarshal(b, &p); err == nil {
			r.mu.Lock()
			r.got = append(r.got, p)
			r.mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// url is the receiver's public-looking address: admission refuses loopback URLs, so the test names the receiver
// hooks.<tenant>.example.com:<port> and resolves that name to loopback in the handler's client only.
func (r *receiver) url() string {
	_, port, _ := net.SplitHostPort(r.srv.Listener.Addr().String())
	return "https://hooks." + r.name + ".example.com:" + port + "/hook"
}

// loopbackNames resolves every hooks.*.example.com name to 127.0.0.1.
type loopbackNames struct{}

func (loopbackNames) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if strings.HasPrefix(host, "hooks.") && strings.HasSuffix(strings.TrimSuffix(host, "."), ".example.com") {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return nil, fmt.Errorf("no such host %q", host)
}

func (r *receiver) payloads() []alerts.Payload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]alerts.Payload(nil), r.got...)
}

// checkAlertsOnKCP proves the alert handler's kcp intake on the real kcp: an Account in tenant acme's workspace
// whose L1 key stops answering raises L1KeyUnreachable, delivered to acme's WebHookNotification naming tenant
// "acme"; globex's WebHookNotification, with the very same namespace/name and subscribed to the same event type,
// gets nothing.
func checkAlertsOnKCP(t *testing.T, ctx context.Context, s *kcpserver.Server, w *kcpserver.World, graph *kcp.Graph, chain *keychain.Chain) {
	acme, globex := newReceiver(t, "acme"), newReceiver(t, "globex")
	roots := x509.NewCertPool()
	roots.AddCert(acme.srv.Certificate())
	roots.AddCert(globex.srv.Certificate())

	events, err := kcp.EventsListWatch(s.Shard)
	if err != nil {
		t.Fatal(err)
	}
	targets, err := kcp.WebHookNotificationsListWatch(s.Shard, 0)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := kcp.NewWorkspaceClients(s.Shard)
	if err != nil {
		t.Fatal(err)
	}
	h := &alerts.Handler{Log: testr.New(t)}
	h.Webhooks = alerts.NewDispatcher(alerts.WebhookOptions{
		// Loopback is allowed for the local receivers only; everything else is the production client.
		// The receivers' names resolve to loopback here only; httptest's certificates are issued to example.com.
		Client: netguard.NewClient(netguard.ClientOptions{TLSConfig: &tls.Config{RootCAs: roots, ServerName: "example.com"},
			Resolver: loopbackNames{}, AllowLoopback: true, MaxRedirects: -1, Timeout: 2 * time.Second}), Status: alerts.KCPStatus{Workspaces: ws}, Secrets: alerts.KCPSecrets{Workspaces: ws},
		Attempts: 2, BaseBackoff: 100 * time.Millisecond, StatusInterval: 200 * time.Millisecond, Log: testr.New(t),
	})
	src := &alerts.KCPSource{Events: events, Targets: targets, Locate: kcp.Locate, Tenants: graph, Handler: h, Log: testr.New(t)}
	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = h.Webhooks.Run(actx) }()
	go func() { defer wg.Done(); _ = src.Start(actx) }()
	defer func() { cancel(); wg.Wait() }()

	// Both tenants subscribe, under the same namespace/name, each to its own receiver.
	for _, tc := range []struct {
		ws string
		r  *receiver
	}{{w.Acme, acme}, {w.Globex, globex}} {
		wh := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": cmkv1.GroupVersion.String(), "kind": "WebHookNotification",
			"metadata": map[string]any{"name": "alerts", "namespace": "keys"},
			"spec": map[string]any{"url": tc.r.url(), "eventTypes": []any{string(cmkv1.EventL1KeyUnreachable),
				string(cmkv1.EventAccountReady)}},
		}}
		if _, err := kcpserver.Create(ctx, s.Base, tc.ws, kcp.WebHookNotificationsGVR, wh, metav1.CreateOptions{}); err != nil {
			t.Fatalf("WebHookNotification in %s: %v", tc.ws, err)
		}
	}

	// An Account whose L1 key does not exist and will not be created: with provisioning off for the embedded
	// keystore, its probe fails. Marking it Ready once stands for "the key answered before"; the next probe finds
	// the key gone and the controller reports L1KeyUnreachable in acme's workspace.
	chain.SetProvisioning(cmkv1.KeystoreLocal, false)
	defer chain.SetProvisioning(cmkv1.KeystoreLocal, true)
	acct := kcpserver.Account("keys", "gone-key", "acme")
	if _, err := kcpserver.Create(ctx, s.Base, w.Acme, kcp.AccountsGVR, acct, metav1.CreateOptions{}); err != nil {
		t.Fatalf("Account: %v", err)
	}
	dc, err := kcpserver.Client(s.Base, w.Acme)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "L1KeyUnreachable delivered to acme's webhook", func() error {
		for _, p := range acme.payloads() {
			if p.Type == cmkv1.EventL1KeyUnreachable && p.Account == "gone-key" {
				if p.Tenant != "acme" || p.Namespace != "keys" || p.Object.Kind != "Account" {
					t.Fatalf("delivery names the wrong tenant or object: %+v", p)
				}
				return nil
			}
		}
		// (Re-)mark the Account Ready until a probe sees it Ready and finds the key missing.
		u, err := dc.Resource(kcp.AccountsGVR).Namespace("keys").Get(ctx, "gone-key", metav1.GetOptions{})
		if err != nil {
			return err
		}
		var a cmkv1.Account
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &a); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(a.Status.Conditions, cmkv1.ConditionReady) {
			meta.SetStatusCondition(&a.Status.Conditions, metav1.Condition{Type: cmkv1.ConditionReady, Status: metav1.ConditionTrue,
				Reason: "KeyAnswered", Message: "marked Ready by the test", ObservedGeneration: a.Generation})
			patch, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": a.Status.Conditions}})
			if _, err := dc.Resource(kcp.AccountsGVR).Namespace("keys").Patch(ctx, "gone-key", types.MergePatchType, patch,
				metav1.PatchOptions{}, "status"); err != nil {
				return err
			}
		}
		return fmt.Errorf("acme received %d deliveries, none about gone-key yet", len(acme.payloads()))
	})
	// The delivery state lands on acme's WebHookNotification status, in acme's workspace.
	eventually(t, "delivery recorded on acme's WebHookNotification", func() error {
		var wh cmkv1.WebHookNotification
		if err := getTyped(ctx, s, w.Acme, kcp.WebHookNotificationsGVR.Resource, "keys", "alerts", &wh); err != nil {
			return err
		}
		if wh.Status.Delivered < 1 {
			return fmt.Errorf("status %+v", wh.Status)
		}
		return nil
	})
	// Globex is subscribed to the same types under the same namespace/name: it must not have seen acme's event.
	time.Sleep(time.Second)
	for _, p := range globex.payloads() {
		if p.Tenant != "globex" || p.Account == "gone-key" {
			t.Fatalf("globex's webhook received another tenant's event: %+v", p)
		}
	}
}
