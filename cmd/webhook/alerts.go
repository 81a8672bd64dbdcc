package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/apeirora/apeiro-cmk/pkg/alerts"
	"github.com/apeirora/apeiro-cmk/pkg/alerts/amclient"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/netguard"
)

// alertOptions are the flags of the alert handler (docs/alerts.md).
type alertOptions struct {
	enabled          bool
	amURL            string
	amCAFile         string
	amTokenFile      string
	generatorURL     string
	queueSize        int
	sources          string
	certNamespaces   string
	replayWindow     time.Duration
	whAttempts       int
	whRate           float64
	whConcurrency    int
	whQueue          int
	whTimeout        time.Duration
	whMaxResponseLen int64
}

func (a *alertOptions) bind(fs *flag.FlagSet) {
	fs.BoolVar(&a.enabled, "alerts", true, "Run the alert handler: lifecycle Events to Alertmanager and to tenants' WebHookNotification targets (on the elected leader).")
	fs.StringVar(&a.amURL, "alertmanager-url", "", "Alertmanager base URL (e.g. http://alertmanager.monitoring:9093). Empty: no Alertmanager; tenant webhooks still get events.")
	fs.StringVar(&a.amCAFile, "alertmanager-ca-file", "", "PEM CA bundle for an https Alertmanager.")
	fs.StringVar(&a.amTokenFile, "alertmanager-bearer-token-file", "", "File with a bearer token sent to Alertmanager (read per request).")
	fs.StringVar(&a.generatorURL, "alerts-generator-url", "https://kubernetes.default.svc", "Base of each alert's generatorURL (the object's API path is appended).")
	fs.IntVar(&a.queueSize, "alerts-queue-size", 10000, "Alerts held for Alertmanager while it is unreachable; when full, event intake waits.")
	fs.StringVar(&a.sources, "alerts-event-sources", "apeiro-cmk", "Comma-separated reporting-component prefixes whose Events are routed; others are ignored.")
	fs.StringVar(&a.certNamespaces, "alerts-certificate-event-namespaces", "apeiro-cmk-system", "Namespaces where certificate renewal Events may name their tenant (comma-separated).")
	fs.DurationVar(&a.replayWindow, "alerts-replay-window", 10*time.Minute, "After a restart, Events younger than this are delivered to tenant webhooks again (at-least-once across restarts).")
	fs.IntVar(&a.whAttempts, "alerts-webhook-attempts", 5, "Attempts per tenant webhook delivery before it is dead-lettered.")
	fs.Float64Var(&a.whRate, "alerts-webhook-rate", 5, "Requests per second per tenant webhook target.")
	fs.IntVar(&a.whConcurrency, "alerts-webhook-concurrency", 2, "Deliveries in flight per tenant webhook target.")
	fs.IntVar(&a.whQueue, "alerts-webhook-queue", 256, "Deliveries waiting per tenant webhook target; more are dead-lettered.")
	fs.DurationVar(&a.whTimeout, "alerts-webhook-timeout", 10*time.Second, "Time budget of one tenant webhook request.")
	fs.Int64Var(&a.whMaxResponseLen, "alerts-webhook-max-response-bytes", 64<<10, "Largest tenant webhook response read; larger answers fail the delivery.")
}

// newAlertHandler builds the alert handler both modes share: its metrics and, with --alertmanager-url, the
// Alertmanager sender, added to the manager.
func newAlertHandler(mgr manager.Manager, a alertOptions) (*alerts.Handler, logr.Logger, error) {
	log := ctrl.Log.WithName("alerts")
	m := alerts.NewMetrics(metrics.Registry)
	h := &alerts.Handler{Log: log, Metrics: m}
	if a.amURL != "" {
		c, err := amclient.New(amclient.Options{URL: a.amURL, CAFile: a.amCAFile, BearerTokenFile: a.amTokenFile})
		if err != nil {
			return nil, log, fmt.Errorf("--alertmanager-url: %w", err)
		}
		h.AM = alerts.NewAMSink(alerts.AMOptions{Poster: c, GeneratorBase: a.generatorURL, QueueSize: a.queueSize, Log: log.WithName("alertmanager"), Metrics: m})
		if err := mgr.Add(manager.RunnableFunc(h.AM.Run)); err != nil {
			return nil, log, err
		}
	}
	return h, log, nil
}

// setupAlerts adds the alert handler to the manager: the Alertmanager sender, the tenant webhook dispatcher (its
// targets follow the WebHookNotification informer) and the Event source. Everything runs on the elected leader so
// that replicas do not deliver each event several times.
func setupAlerts(ctx context.Context, mgr manager.Manager, o options) error {
	a := o.alerts
	if !a.enabled {
		return nil
	}
	h, log, err := newAlertHandler(mgr, a)
	if err != nil {
		return err
	}
	h.Webhooks = alerts.NewDispatcher(alerts.WebhookOptions{
		Client:  netguard.NewClient(netguard.ClientOptions{Timeout: a.whTimeout, MaxRedirects: -1, MaxResponseBytes: a.whMaxResponseLen}),
		Secrets: alerts.KubeSecrets{Reader: mgr.GetAPIReader()}, Status: alerts.KubeStatus{Client: mgr.GetClient()},
		DeadLetter: h.DeadLetter, Attempts: a.whAttempts, Rate: a.whRate, Burst: max(1, int(2*a.whRate)),
		Concurrency: a.whConcurrency, QueuePerTarget: a.whQueue, Log: log.WithName("webhooks"), Metrics: h.Metrics,
	})
	if err := mgr.Add(manager.RunnableFunc(h.Webhooks.Run)); err != nil {
		return err
	}
	inf, err := mgr.GetCache().GetInformer(ctx, &cmkv1.WebHookNotification{})
	if err != nil {
		return fmt.Errorf("alerts: WebHookNotification informer: %w", err)
	}
	if err := alerts.WatchTargets(inf, h.Webhooks); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("alerts: %w", err)
	}
	return mgr.Add(&alerts.EventSource{Clientset: cs, Objects: mgr.GetClient(), Handler: h,
		ReportingControllers: splitList(a.sources), CertificateNamespaces: splitList(a.certNamespaces),
		ReplayWindow: a.replayWindow, Log: log.WithName("events")})
}
