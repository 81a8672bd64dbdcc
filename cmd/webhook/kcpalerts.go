package main

import (
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/apeirora/apeiro-cmk/pkg/alerts"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
	"github.com/apeirora/apeiro-cmk/pkg/netguard"
)

// setupKCPAlerts is setupAlerts for kcp mode: the same handler, Alertmanager sender and tenant webhook dispatcher
// (same flags), fed by cross-workspace watches of Events and WebHookNotifications. A tenant is the tenant of the
// workspace an Event or a WebHookNotification lives in; signing Secrets and status live in the target's workspace.
// base reads and writes inside single workspaces; watch lists and watches across all of them (cmd/webhook/kcpwatch.go).
func setupKCPAlerts(mgr manager.Manager, o options, base, watch *rest.Config, graph *kcp.Graph, synced func() bool) error {
	a := o.alerts
	if !a.enabled {
		return nil
	}
	h, log, err := newAlertHandler(mgr, a)
	if err != nil {
		return err
	}
	ws, err := kcp.NewWorkspaceClients(base)
	if err != nil {
		return err
	}
	h.Webhooks = alerts.NewDispatcher(alerts.WebhookOptions{
		Client:  netguard.NewClient(netguard.ClientOptions{Timeout: a.whTimeout, MaxRedirects: -1, MaxResponseBytes: a.whMaxResponseLen}),
		Secrets: alerts.KCPSecrets{Workspaces: ws}, Status: alerts.KCPStatus{Workspaces: ws},
		DeadLetter: h.DeadLetter, Attempts: a.whAttempts, Rate: a.whRate, Burst: max(1, int(2*a.whRate)),
		Concurrency: a.whConcurrency, QueuePerTarget: a.whQueue, Log: log.WithName("webhooks"), Metrics: h.Metrics,
	})
	if err := mgr.Add(manager.RunnableFunc(h.Webhooks.Run)); err != nil {
		return err
	}
	events, err := kcp.EventsListWatch(watch)
	if err != nil {
		return err
	}
	targets, err := kcp.WebHookNotificationsListWatch(watch, 0)
	if err != nil {
		return err
	}
	return mgr.Add(&alerts.KCPSource{Events: events, Targets: targets, Locate: kcp.Locate, Tenants: graph, Synced: synced,
		Handler: h, ReportingControllers: splitList(a.sources), ReplayWindow: a.replayWindow, Log: log.WithName("events")})
}
