// Command certmanager-controller runs a chosen set of cert-manager's own controllers (the code in
// github.com/cert-manager/cert-manager/pkg/controller/...) against a kube-apiserver named by a kubeconfig.
//
// cert-manager's published controller binary lives in a nested module the project's module proxy does not serve, but
// every controller registers itself with pkg/controller.Register from its package's init. This main only does the
// wiring that binary would do: build the context factory, construct the enabled controllers, start the shared
// informers and run until SIGINT/SIGTERM. The signing, approval and readiness logic is cert-manager's, unchanged.
//
// Leave certificaterequests-approver out of --controllers to exercise denials or an external approver.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"k8s.io/klog/v2"

	// Controllers register themselves in init.
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// The issuers/clusterissuers controllers look issuer implementations up in this registry.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

const defaultControllers = "certificaterequests-approver,certificaterequests-issuer-ca,certificaterequests-issuer-selfsigned," +
	"issuers,clusterissuers,certificates-trigger,certificates-key-manager,certificates-request-manager," +
	"certificates-issuing,certificates-readiness,certificates-revision-manager"

func main() {
	kubeconfig := flag.String("kubeconfig", "", "path to the kubeconfig of the API server (required)")
	clusterNS := flag.String("cluster-resource-namespace", "cert-manager", "namespace holding ClusterIssuer secrets (must exist)")
	controllers := flag.String("controllers", defaultControllers, "comma-separated controller names to run")
	workers := flag.Int("workers", 2, "workers per controller")
	minBackoff := flag.Duration("min-backoff", 5*time.Second, "minimum backoff after a failed issuance")
	maxBackoff := flag.Duration("max-backoff", time.Minute, "maximum backoff after a failed issuance")
	list := flag.Bool("list", false, "print the registered controller names and exit")
	klog.InitFlags(nil)
	flag.Parse()

	if *list {
		for _, n := range known() {
			fmt.Println(n)
		}
		return
	}
	if err := run(*kubeconfig, *clusterNS, *controllers, *workers, *minBackoff, *maxBackoff); err != nil {
		fmt.Fprintln(os.Stderr, "certmanager-controller:", err)
		os.Exit(1)
	}
}

func known() []string {
	var names []string
	for n := range controllerpkg.Known() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func run(kubeconfig, clusterNS, controllers string, workers int, minBackoff, maxBackoff time.Duration) error {
	if kubeconfig == "" {
		return errors.New("--kubeconfig is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, klog.Background(), "cert-manager")

	factory, err := controllerpkg.NewContextFactory(ctx, controllerpkg.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   50,
		KubernetesAPIBurst: 100,
		IssuerOptions:      controllerpkg.IssuerOptions{ClusterResourceNamespace: clusterNS},
		CertificateOptions: controllerpkg.CertificateOptions{
			// Zero would mean "retry a failed issuance immediately, forever".
			CertificateRequestMinimumBackoffDuration: minBackoff,
			CertificateRequestMaximumBackoffDuration: maxBackoff,
		},
	})
	if err != nil {
		return fmt.Errorf("context factory: %w", err)
	}
	// The informer factories are shared by every Context the factory builds; one Build gives us handles to start them.
	shared, err := factory.Build()
	if err != nil {
		return fmt.Errorf("build context: %w", err)
	}

	registry := controllerpkg.Known()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for _, name := range strings.Split(controllers, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		ctor, ok := registry[name]
		if !ok {
			return fmt.Errorf("unknown controller %q (known: %s)", name, strings.Join(known(), ", "))
		}
		c, err := ctor(factory)
		if err != nil {
			return fmt.Errorf("construct %s: %w", name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(workers, ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
		klog.InfoS("controller started", "name", name)
	}
	// Only after every controller registered its informers do we start them, or some would never be started.
	shared.SharedInformerFactory.Start(ctx.Done())
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	klog.InfoS("cert-manager controllers running")

	select {
	case <-ctx.Done():
	case err := <-errs:
		stop()
		wg.Wait()
		return err
	}
	wg.Wait()
	return nil
}
