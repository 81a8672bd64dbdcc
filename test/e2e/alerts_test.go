package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apeirora/apeiro-cmk/internal/testpeers"
	amtest "github.com/apeirora/apeiro-cmk/internal/testpeers/alertmanager"
	"github.com/apeirora/apeiro-cmk/pkg/alerts/amclient"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// suiteAlertmanager is the real Alertmanager the suite's webhook sends alerts to (nil when it is not installed).
var (
	suiteAlertmanager    *amtest.Process
	suiteAlertmanagerErr error
)

// alertmanagerArgs starts Alertmanager for the suite and returns the webhook flags pointing at it; without it the
// webhook runs with tenant webhooks only and TestAlertsReachAlertmanager reports the missing peer.
func alertmanagerArgs(tmp string) []string {
	suiteAlertmanager, suiteAlertmanagerErr = amtest.Launch(filepath.Join(tmp, "alertmanager"))
	if suiteAlertmanagerErr != nil {
		fmt.Fprintf(os.Stderr, "e2e: no Alertmanager: %v\n", suiteAlertmanagerErr)
		return nil
	}
	return []string{"--alertmanager-url=" + suiteAlertmanager.URL}
}

func stopAlertmanager() { suiteAlertmanager.Stop() }

// TestAlertsReachAlertmanager: the Account reconciler's AccountReady Events on the example world's Accounts travel
// through the webhook binary's alert handler to a real Alertmanager, labelled with their tenant; a dry-run Account
// produces no alert.
func TestAlertsReachAlertmanager(t *testing.T) {
	if env.skip != "" {
		t.Skip(env.skip)
	}
	if env.stack == nil {
		t.Skip("the suite runs against an existing cluster; its webhook's Alertmanager is not ours to read")
	}
	if suiteAlertmanager == nil {
		testpeers.Missing(t, fmt.Sprint(suiteAlertmanagerErr))
	}
	c, err := amclient.New(amclient.Options{URL: suiteAlertmanager.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		got, err := c.GetAlerts(ctx, `alertname="AccountReady"`, `namespace="acme"`, `account="main"`)
		if err == nil && len(got) > 0 {
			if got[0].Labels["tenant"] == "" || got[0].Labels["source"] != "apeiro-cmk" || got[0].GeneratorURL == "" {
				t.Fatalf("alert %+v", got[0])
			}
			last = nil
			break
		}
		last = fmt.Errorf("no AccountReady alert for acme/main yet (err %v)", err)
		time.Sleep(500 * time.Millisecond)
	}
	if last != nil {
		t.Fatal(last)
	}

	dry := &cmkv1.Account{ObjectMeta: metav1.ObjectMeta{Name: "dry-run-alerts", Namespace: "acme"},
		Spec: cmkv1.AccountSpec{Keystore: "local", KeyRef: "dry-run-alerts", Region: "eu-central"}}
	if err := env.client.Create(ctx, dry, client.DryRunAll); err != nil {
		t.Logf("dry-run create answered: %v", err) // admitted or denied, nothing may be stored or announced
	}
	time.Sleep(5 * time.Second)
	got, err := c.GetAlerts(ctx, `account="dry-run-alerts"`)
	if err != nil || len(got) != 0 {
		t.Fatalf("a dry-run Account produced alerts: %v %+v", err, got)
	}
}
