package alertmanager

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	notifv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/alerts/amclient"
)

func configure(t *testing.T, p *Plugin, yaml string) error {
	t.Helper()
	_, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: yaml})
	return err
}

func TestConfigErrors(t *testing.T) {
	for name, y := range map[string]string{
		"empty":            "",
		"no url":           "severity: info\n",
		"bad scheme":       "url: ftp://x\n",
		"user info":        "url: http://u:p@x:9093\n",
		"unknown field":    "url: http://x\nbogus: 1\n",
		"bad severity":     "url: http://x\nseverity: loud\n",
		"bad timeout":      "url: http://x\ntimeout: -1s\n",
		"huge timeout":     "url: http://x\ntimeout: 2h\n",
		"reserved label":   "url: http://x\nlabels: {alertname: x}\n",
		"bad label":        "url: http://x\nlabels: {\"a-b\": x}\n",
		"bad generatorURL": "url: http://x\ngeneratorURL: nope\n",
		"missing CA":       "url: https://x\ncaFile: /nonexistent/ca.pem\n",
		"zero body":        "url: http://x\nmaxBodyBytes: 0\n",
	} {
		if err := configure(t, New(), y); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := configure(t, New(), "url: http://127.0.0.1:1/prefix/\ntimeout: 3s\nresolveAfter: 1m\nlabels: {cluster: a}\n"); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

// recorder is a fake Alertmanager answering with a fixed status.
type recorder struct {
	mu     sync.Mutex
	code   int
	alerts [][]amclient.Alert
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var a []amclient.Alert
	b, _ := io.ReadAll(req.Body)
	_ = json.Unmarshal(b, &a)
	r.mu.Lock()
	r.alerts = append(r.alerts, a)
	code := r.code
	r.mu.Unlock()
	w.WriteHeader(code)
	io.WriteString(w, "refused: bad labels")
}

func TestSendNotificationSemantics(t *testing.T) {
	rec := &recorder{code: 200}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	p := New()
	p.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	ctx := context.Background()
	if resp, _ := p.SendNotification(ctx, &notifv1.SendNotificationRequest{NotificationType: 1, Recipients: []string{"a@b.c"}}); resp.GetSuccess() {
		t.Fatal("unconfigured plugin delivered")
	}
	if err := configure(t, p, "url: "+srv.URL+"/am\nmaxBodyBytes: 10\nresolveAfter: 1m\n"); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []notifv1.NotificationType{1, 2, 3} {
		resp, err := p.SendNotification(ctx, &notifv1.SendNotificationRequest{NotificationType: typ,
			Recipients: []string{"https://hooks.example.com/T/B/tok", "alice@example.org"}, Subject: "s", Body: "b"})
		if err != nil || !resp.GetSuccess() {
			t.Fatalf("%v: %v %v", typ, resp, err)
		}
	}
	a := rec.alerts[2][0]
	if a.Labels["notification_type"] != "web" || a.Labels["alertname"] != "CMKNotification" || a.EndsAt.Sub(a.StartsAt) != time.Minute {
		t.Errorf("alert %+v", a)
	}
	if strings.Contains(a.Annotations["recipients"], "tok") || strings.Contains(a.Annotations["recipients"], "alice") {
		t.Errorf("recipients not masked: %q", a.Annotations["recipients"])
	}
	for name, req := range map[string]*notifv1.SendNotificationRequest{
		"unspecified":     {Recipients: []string{"a@b.c"}},
		"unknown type":    {NotificationType: 99, Recipients: []string{"a@b.c"}},
		"no recipients":   {NotificationType: 1},
		"blank recipient": {NotificationType: 1, Recipients: []string{" "}},
		"control char":    {NotificationType: 1, Recipients: []string{"a\n@b.c"}},
		"body too big":    {NotificationType: 1, Recipients: []string{"a@b.c"}, Body: strings.Repeat("x", 11)},
		"invalid utf8":    {NotificationType: 1, Recipients: []string{"a@b.c"}, Subject: "\xff"},
	} {
		resp, err := p.SendNotification(ctx, req)
		if err != nil || resp.GetSuccess() || resp.GetMessage() == "" {
			t.Errorf("%s: %v %v, want success=false with a reason", name, resp, err)
		}
	}
	rec.code = 400
	resp, _ := p.SendNotification(ctx, &notifv1.SendNotificationRequest{NotificationType: 1, Recipients: []string{"a@b.c"}})
	if resp.GetSuccess() || !strings.Contains(resp.GetMessage(), "400") {
		t.Errorf("refused by alertmanager: %v", resp)
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"url: http://x:9093\n", "url: https://a\nlabels: {a: b}\n", "{{{", "url: http://x\ntimeout: 1h\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := parseConfig(raw)
		if err != nil {
			return
		}
		if s.client == nil || s.maxBody < 1 || s.resolveAfter <= 0 {
			t.Fatalf("accepted config without usable settings: %q", raw)
		}
		for k := range s.labels {
			if reserved[k] {
				t.Fatalf("reserved label %q accepted", k)
			}
		}
	})
}
