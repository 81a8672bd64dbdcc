package alerts

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// Payload is the generic JSON body (format JSON).
type Payload struct {
	ID        string          `json:"id"`
	Type      cmkv1.EventType `json:"type"`
	Reason    string          `json:"reason"`
	Severity  Severity        `json:"severity"`
	Tenant    string          `json:"tenant"`
	Namespace string          `json:"namespace,omitempty"`
	Account   string          `json:"account,omitempty"`
	Key       string          `json:"key,omitempty"`
	Object    ObjectRef       `json:"object"`
	Message   string          `json:"message,omitempty"`
	Time      time.Time       `json:"time"`
}

// SlackPayload is the Slack-compatible body (format Slack): an incoming-webhook message with a text fallback and
// one mrkdwn section.
type SlackPayload struct {
	Text   string       `json:"text"`
	Blocks []SlackBlock `json:"blocks,omitempty"`
}

// SlackBlock is a Slack block-kit block.
type SlackBlock struct {
	Type string     `json:"type"`
	Text *SlackText `json:"text,omitempty"`
}

// SlackText is a block-kit text object.
type SlackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// Body renders the payload in the target's format.
func Body(format cmkv1.NotificationFormat, e *Event) ([]byte, error) {
	r := e.Rule()
	if format == cmkv1.FormatSlack {
		icon := map[Severity]string{SeverityInfo: ":information_source:", SeverityWarning: ":warning:", SeverityCritical: ":rotating_light:"}[r.Severity]
		var where []string
		for _, kv := range [][2]string{{"tenant", e.Tenant}, {"account", e.Account}, {"key", e.Key}} {
			if kv[1] != "" {
				where = append(where, kv[0]+" `"+slackEscape(kv[1])+"`")
			}
		}
		head := fmt.Sprintf("%s *%s* (%s) %s", icon, r.WebhookType, r.Severity, strings.Join(where, ", "))
		text := head
		if e.Message != "" {
			text += "\n" + slackEscape(e.Message)
		}
		return json.Marshal(SlackPayload{
			Text:   fmt.Sprintf("%s %s: %s", r.WebhookType, e.Object.Name, slackEscape(e.Message)),
			Blocks: []SlackBlock{{Type: "section", Text: &SlackText{Type: "mrkdwn", Text: text}}},
		})
	}
	return json.Marshal(Payload{ID: e.ID, Type: r.WebhookType, Reason: e.Reason, Severity: r.Severity, Tenant: e.Tenant,
		Namespace: e.Namespace, Account: e.Account, Key: e.Key, Object: e.Object, Message: e.Message, Time: e.Time.UTC()})
}

// slackEscape escapes the three characters Slack's mrkdwn treats as control characters, so an event message cannot
// inject mentions (<!channel>) or links.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
