package kcp_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
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
	commonv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/common/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	amtest "github.com/apeirora/apeiro-cmk/internal/testpeers/alertmanager"
	"github.com/apeirora/apeiro-cmk/pkg/alerts"
	"github.com/apeirora/apeiro-cmk/pkg/alerts/amclient"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpserver"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/netguard"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/local"
	"github.com/apeirora/apeiro-cmk/profiles"
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

// has reports whether the receiver got an event of type typ about Account account.
func (r *receiver) has(typ cmkv1.EventType, account string) bool {
	for _, p := range r.payloads() {
		if p.Type == typ && p.Account == account {
			return true
		}
	}
	return false
}

// alertsAccount is the Account both tenants create under the same namespace/name; only acme's L1 key goes away.
const alertsAccount = "l1-goes-away"

// checkAlertsOnKCP proves the alert handler's kcp intake on the real kcp, with both audiences real: tenants' webhook
// endpoints (httptest receivers: they stand for the tenants' own services) and the platform's Alertmanager (Debian's
// prometheus-alertmanager).
//
// Tenants acme and globex each create the Account keys/l1-goes-away on the embedded keystore. The kcp controllers
// create each tenant's L1 key and make the Account Ready through its probe (no status is written by the test). Then
// acme's L1 key is deleted in the keystore itself (its DeleteKey, no deletion window); the next periodic probe finds
// it missing, the controller turns acme's Account not Ready and writes L1KeyUnreachable into root:acme, and the
// handler delivers it to acme's WebHookNotification and to Alertmanager as a critical alert labelled with tenant
// acme. Globex — same namespace/name, same event types subscribed, its own Account still Ready — gets its own
// AccountReady and nothing of acme's, neither on its webhook nor in its Alertmanager alerts.
func checkAlertsOnKCP(t *testing.T, ctx context.Context, s *kcpserver.Server, w *kcpserver.World, graph *kcp.Graph, chain *keychain.Chain) {
	if !chain.Provisions(cmkv1.KeystoreLocal) {
		t.Fatal("the fixture's key chain must provision embedded keys: the Accounts get their L1 key from the controller")
	}
	am := amtest.Start(t)
	amc, err := amclient.New(amclient.Options{URL: am.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
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
	// As the webhook wires it in kcp mode (cmd/webhook): the Alertmanager sink and the tenant webhook dispatcher.
	h := &alerts.Handler{Log: testr.New(t), AM: alerts.NewAMSink(alerts.AMOptions{Poster: amc, Log: testr.New(t)})}
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
	wg.Add(3)
	go func() { defer wg.Done(); _ = h.AM.Run(actx) }()
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

	// Both Accounts become Ready through the controllers: L1 key created in the embedded keystore, probe answered.
	for _, tc := range []struct{ ws, tenant string }{{w.Acme, "acme"}, {w.Globex, "globex"}} {
		if _, err := kcpserver.Create(ctx, s.Base, tc.ws, kcp.AccountsGVR, kcpserver.Account("keys", alertsAccount, tc.tenant), metav1.CreateOptions{}); err != nil {
			t.Fatalf("Account in %s: %v", tc.ws, err)
		}
	}
	for _, tc := range []struct {
		ws string
		r  *receiver
	}{{w.Acme, acme}, {w.Globex, globex}} {
		eventually(t, "the Account in "+tc.ws+" Ready through its probe", func() error {
			return accountReady(ctx, s, tc.ws, metav1.ConditionTrue, "KeyAnswered")
		})
		eventually(t, "AccountReady delivered to "+tc.r.name+"'s webhook", func() error {
			if !tc.r.has(cmkv1.EventAccountReady, alertsAccount) {
				return fmt.Errorf("%s received %d deliveries, no AccountReady for %s yet", tc.r.name, len(tc.r.payloads()), alertsAccount)
			}
			return nil
		})
	}

	// acme's L1 key goes away in the keystore, with provisioning still on: a key that answered once is reported as
	// lost at the next probe, never created again under the old name.
	acct, err := getAccount(ctx, s, w.Acme, "keys", alertsAccount)
	if err != nil {
		t.Fatal(err)
	}
	deleteLocalKey(t, ctx, chain, acct)

	eventually(t, "acme's Account not Ready after its key was deleted", func() error {
		return accountReady(ctx, s, w.Acme, metav1.ConditionFalse, "KeyNotFound")
	})
	eventually(t, "L1KeyUnreachable delivered to acme's webhook", func() error {
		for _, p := range acme.payloads() {
			if p.Type == cmkv1.EventL1KeyUnreachable && p.Account == alertsAccount {
				if p.Tenant != "acme" || p.Namespace != "keys" || p.Object.Kind != "Account" || p.Severity != alerts.SeverityCritical {
					t.Fatalf("delivery names the wrong tenant or object: %+v", p)
				}
				return nil
			}
		}
		return fmt.Errorf("acme received %d deliveries, none L1KeyUnreachable about %s yet", len(acme.payloads()), alertsAccount)
	})
	// The same event reaches the platform's Alertmanager as a firing critical alert with the documented labels.
	eventually(t, "L1KeyUnreachable firing in Alertmanager for tenant acme", func() error {
		got, err := amc.GetAlerts(ctx, `alertname="L1KeyUnreachable"`, `account="`+alertsAccount+`"`)
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return errors.New("no L1KeyUnreachable alert yet")
		}
		for _, a := range got {
			want := map[string]string{"alertname": "L1KeyUnreachable", "severity": "critical", "source": "apeiro-cmk",
				"tenant": "acme", "namespace": "keys", "account": alertsAccount, "kind": "Account", "name": alertsAccount}
			for k, v := range want {
				if a.Labels[k] != v {
					t.Fatalf("alert label %s = %q, want %q (labels %v)", k, a.Labels[k], v, a.Labels)
				}
			}
			if len(a.Labels) != len(want) { // no key label on an Account alert, nothing undocumented
				t.Fatalf("alert labels %v, want exactly %v", a.Labels, want)
			}
			if a.Status.State != "active" || !strings.Contains(a.Annotations["description"], "stopped answering") ||
				!strings.HasSuffix(a.GeneratorURL, "/namespaces/keys/accounts/"+alertsAccount) {
				t.Fatalf("alert %+v", a)
			}
		}
		return nil
	})
	// The delivery state lands on acme's WebHookNotification status, in acme's workspace.
	eventually(t, "delivery recorded on acme's WebHookNotification", func() error {
		var wh cmkv1.WebHookNotification
		if err := getTyped(ctx, s, w.Acme, kcp.WebHookNotificationsGVR.Resource, "keys", "alerts", &wh); err != nil {
			return err
		}
		if wh.Status.Delivered < 2 { // AccountReady, then L1KeyUnreachable
			return fmt.Errorf("status %+v", wh.Status)
		}
		return nil
	})

	// Globex's stream: its own Account's AccountReady (so the stream is live), nothing of acme's.
	eventually(t, "globex's AccountReady alert in Alertmanager", func() error {
		got, err := amc.GetAlerts(ctx, `alertname="AccountReady"`, `tenant="globex"`, `account="`+alertsAccount+`"`)
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return errors.New("none yet")
		}
		return nil
	})
	// The handler routes each event once to both sides; give a misrouted copy a moment to show up.
	time.Sleep(time.Second)
	if err := accountReady(ctx, s, w.Globex, metav1.ConditionTrue, "KeyAnswered"); err != nil {
		t.Fatalf("globex's Account, whose key was not touched: %v", err)
	}
	for _, p := range globex.payloads() {
		if p.Tenant != "globex" || p.Type == cmkv1.EventL1KeyUnreachable {
			t.Fatalf("globex's webhook received another tenant's event: %+v", p)
		}
	}
	got, err := amc.GetAlerts(ctx, `tenant="globex"`)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range got {
		if a.Labels["alertname"] == "L1KeyUnreachable" || a.Labels["tenant"] != "globex" {
			t.Fatalf("globex's alert stream holds another tenant's alert: %v", a.Labels)
		}
	}
	if got, err = amc.GetAlerts(ctx, `alertname="L1KeyUnreachable"`, `account="`+alertsAccount+`"`); err != nil || len(got) != 1 {
		t.Fatalf("L1KeyUnreachable alerts about %s: %v %+v, want exactly acme's", alertsAccount, err, got)
	}
}

// accountReady checks the Ready condition of keys/l1-goes-away in workspace ws.
func accountReady(ctx context.Context, s *kcpserver.Server, ws string, want metav1.ConditionStatus, reason string) error {
	a, err := getAccount(ctx, s, ws, "keys", alertsAccount)
	if err != nil {
		return err
	}
	c := meta.FindStatusCondition(a.Status.Conditions, cmkv1.ConditionReady)
	if c == nil || c.Status != want || c.Reason != reason {
		return fmt.Errorf("Ready condition %+v, want %s/%s", c, want, reason)
	}
	return nil
}

// deleteLocalKey deletes the Account's L1 key at once through the embedded keystore's own operations service
// (DeleteKey with a zero deletion window), configured from the Apeiro profile like the plugin the controllers probe,
// so both see the same key directory; then checks the keystore no longer knows the key.
func deleteLocalKey(t *testing.T, ctx context.Context, chain *keychain.Chain, a *cmkv1.Account) {
	t.Helper()
	entries, err := host.ParseProfile(profiles.ApeiroBuiltin)
	if err != nil {
		t.Fatal(err)
	}
	yamlCfg := ""
	for _, e := range entries {
		if e.Name == "LOCAL" && e.Type == host.TypeKeyOperations {
			yamlCfg = e.YamlConfiguration
		}
	}
	ops := local.NewOperations()
	if _, err := ops.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: yamlCfg}); err != nil {
		t.Fatalf("configuring the local keystore: %v", err)
	}
	defer ops.Close()
	// The instance configuration the controllers use: it carries the access data of the Account's tenant instance.
	cfg, err := chain.InstanceConfig(a)
	if err != nil {
		t.Fatal(err)
	}
	params := &operationsv1.RequestParameters{Config: &commonv1.KeystoreInstanceConfig{Values: cfg}, KeyId: a.Spec.KeyRef}
	if _, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params}); err != nil {
		t.Fatalf("the Ready Account's L1 key %q before deletion: %v", a.Spec.KeyRef, err)
	}
	now := int32(0)
	if _, err := ops.DeleteKey(ctx, &operationsv1.DeleteKeyRequest{Parameters: params, Window: &now}); err != nil {
		t.Fatalf("deleting L1 key %q: %v", a.Spec.KeyRef, err)
	}
	if _, err := ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: params}); status.Code(err) != codes.NotFound {
		t.Fatalf("L1 key %q after deletion: %v, want NotFound", a.Spec.KeyRef, err)
	}
}
