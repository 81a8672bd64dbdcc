// Command bare is the reference point of the side-by-side load benchmark (bench/load): the smallest admission webhook
// controller-runtime offers — its default webhook server and admission.Webhook — with a handler that admits
// everything on the same paths as apeiro-cmk's webhook. Whatever our webhook costs above it is ours.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	cmkadmission "github.com/apeirora/apeiro-cmk/pkg/admission"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 9443, "port to listen on")
	certDir := flag.String("cert-dir", "", "directory with tls.crt and tls.key")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := webhook.NewServer(webhook.Options{Host: *host, Port: *port, CertDir: *certDir})
	allow := admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { return admission.Allowed("") })
	for path := range (&cmkadmission.Handlers{}).Endpoints() {
		srv.Register(path, &admission.Webhook{Handler: allow})
	}
	if err := srv.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bare webhook:", err)
		os.Exit(1)
	}
}
