// Package devstack brings up the whole local stack shared by `make run` and the e2e suite: a real control plane
// (internal/controlplane), the CRDs from deploy/base/crds, the webhook binary as a child process serving TLS on a
// free loopback port with a throw-away certificate, and the Validating/MutatingWebhookConfigurations from
// deploy/base rewritten to call it at https://127.0.0.1:<port><path>. Up returns only once a probe request has been
// answered by the webhook, so callers can start writing objects immediately.
package devstack
