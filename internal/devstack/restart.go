package devstack

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
)

// RestartWebhook stops the webhook and starts it again with extra flags and environment (added to Options'
// WebhookArgs and WebhookEnv for this run only), then re-registers the webhook configurations (the new process
// has a new port and serving CA) and waits until it answers. Tests use it to point the webhook at a peer that
// starts after the stack, e.g. moto for AWS KMS. Call it with no arguments to go back to the original settings.
// Everything else (the local keystore directory, the control plane) is kept.
func (s *Stack) RestartWebhook(ctx context.Context, extraArgs, extraEnv []string) error {
	if s.baseArgs == nil {
		s.baseArgs, s.baseEnv = slices.Clone(s.opts.WebhookArgs), slices.Clone(s.opts.WebhookEnv)
		if s.baseArgs == nil {
			s.baseArgs = []string{}
		}
	}
	if err := s.Webhook.Stop(s.opts.StopGrace); err != nil {
		return fmt.Errorf("devstack: stopping the webhook: %w", err)
	}
	s.opts.WebhookArgs = append(slices.Clone(s.baseArgs), extraArgs...)
	s.opts.WebhookEnv = append(slices.Clone(s.baseEnv), extraEnv...)
	if err := s.startWebhook(ctx); err != nil {
		return fmt.Errorf("devstack: restarting the webhook: %w", err)
	}
	cfgs, src, err := RenderWebhookConfigurations(filepath.Join(s.opts.Root, "deploy", "base"), s.WebhookURL, s.WebhookCAPEM)
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	s.webhookConfigs, s.WebhookConfigSource = cfgs, src
	return s.InstallWebhookConfigurations(ctx)
}
