package log

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	notifv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var fixed = time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)

func fileSink(t *testing.T, extra string) (*Plugin, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notifications.jsonl")
	p := New(WithClock(func() time.Time { return fixed }))
	y := "sink: file\npath: " + path + "\n" + extra
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: y}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return p, path
}

func readRecords(t *testing.T, path string) []Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r Record
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

func send(t *testing.T, p *Plugin, req *notifv1.SendNotificationRequest) *notifv1.SendNotificationResponse {
	t.Helper()
	resp, err := p.SendNotification(context.Background(), req)
	if err != nil {
		t.Fatalf("SendNotification returned a gRPC error: %v", err)
	}
	return resp
}

func TestRecordsOneRedactedLine(t *testing.T) {
	p, path := fileSink(t, "bodyPreviewBytes: 10")
	body := "Key rotated. token=s3cr3t-value-that-must-not-appear"
	resp := send(t, p, &notifv1.SendNotificationRequest{
		NotificationType: notifv1.NotificationType_NOTIFICATION_TYPE_EMAIL,
		Recipients:       []string{"alice@example.org", "https://hooks.example.com/services/T0/B0/XYZsecret?sig=abc", "+4915112345678"},
		Subject:          "L1 key unreachable",
		Body:             body,
	})
	if !resp.GetSuccess() {
		t.Fatalf("not delivered: %s", resp.GetMessage())
	}
	raw, _ := os.ReadFile(path)
	for _, secret := range []string{"s3cr3t", "XYZsecret", "sig=abc", "alice@", "12345678"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("sink contains %q: %s", secret, raw)
		}
	}
	recs := readRecords(t, path)
	if len(recs) != 1 {
		t.Fatalf("got %d records", len(recs))
	}
	r := recs[0]
	want := Record{
		Time: fixed, Event: "notification", Type: "EMAIL", Subject: "L1 key unreachable",
		Recipients:     []string{"a***@example.org", "https://hooks.example.com/***", "***78"},
		RecipientCount: 3, BodyBytes: len(body), BodyPreview: "Key rotate", BodyTruncated: true,
		BodySHA256: r.BodySHA256,
	}
	if len(r.BodySHA256) != 64 {
		t.Errorf("bodySha256 = %q", r.BodySHA256)
	}
	gotJSON, _ := json.Marshal(r)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("record\n got %s\nwant %s", gotJSON, wantJSON)
	}
}

func TestUndeliverable(t *testing.T) {
	email := notifv1.NotificationType_NOTIFICATION_TYPE_EMAIL
	tests := map[string]struct {
		req   *notifv1.SendNotificationRequest
		extra string
		want  string
	}{
		"unspecified type": {&notifv1.SendNotificationRequest{Recipients: []string{"a@b.c"}}, "", "unspecified"},
		"disabled type": {&notifv1.SendNotificationRequest{NotificationType: notifv1.NotificationType_NOTIFICATION_TYPE_TEXT,
			Recipients: []string{"a@b.c"}}, "types: [EMAIL]", "not enabled"},
		"no recipients":    {&notifv1.SendNotificationRequest{NotificationType: email}, "", "no recipients"},
		"blank recipient":  {&notifv1.SendNotificationRequest{NotificationType: email, Recipients: []string{"a@b.c", " "}}, "", "recipient 1 is empty"},
		"control char":     {&notifv1.SendNotificationRequest{NotificationType: email, Recipients: []string{"a@b.c\n"}}, "", "control"},
		"huge recipient":   {&notifv1.SendNotificationRequest{NotificationType: email, Recipients: []string{strings.Repeat("a", 600)}}, "", "exceeds 512"},
		"many recipients":  {&notifv1.SendNotificationRequest{NotificationType: email, Recipients: []string{"a@b.c", "d@e.f"}}, "maxRecipients: 1", "exceed the limit"},
		"body over cap":    {&notifv1.SendNotificationRequest{NotificationType: email, Recipients: []string{"a@b.c"}, Body: strings.Repeat("x", 11)}, "maxBodyBytes: 10", "exceeds the limit of 10"},
		"unknown enum val": {&notifv1.SendNotificationRequest{NotificationType: 42, Recipients: []string{"a@b.c"}}, "", "not enabled"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, path := fileSink(t, tc.extra)
			resp := send(t, p, tc.req)
			if resp.GetSuccess() || !strings.Contains(resp.GetMessage(), tc.want) {
				t.Fatalf("response = %v, want success=false with %q", resp, tc.want)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatalf("undeliverable notification was written (%v)", err)
			}
		})
	}
}

func TestUnwritableFile(t *testing.T) {
	dir := t.TempDir()
	// A path below a regular file can never be created, even as root.
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p := New()
	y := "sink: file\npath: " + filepath.Join(blocker, "n.jsonl")
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: y}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	resp := send(t, p, &notifv1.SendNotificationRequest{NotificationType: notifv1.NotificationType_NOTIFICATION_TYPE_WEB, Recipients: []string{"https://x.example/hook"}})
	if resp.GetSuccess() || !strings.Contains(resp.GetMessage(), "write to file sink failed") {
		t.Fatalf("response = %v", resp)
	}
}

func TestConfigure(t *testing.T) {
	tests := map[string]struct{ yaml, want string }{
		"bad yaml":         {"sink: [", "decode YAML"},
		"unknown field":    {"sinks: stdout", "unknown field"},
		"unknown sink":     {"sink: syslog", "unknown sink"},
		"file w/o path":    {"sink: file", "requires path"},
		"relative path":    {"sink: file\npath: n.jsonl", "absolute"},
		"path w/o file":    {"sink: stdout\npath: /tmp/x", "only valid with sink: file"},
		"zero body cap":    {"maxBodyBytes: 0", "positive"},
		"negative preview": {"bodyPreviewBytes: -1", "between"},
		"zero recipients":  {"maxRecipients: 0", "positive"},
		"unknown type":     {"types: [PIGEON]", "unknown notification type"},
		"unspecified type": {"types: [UNSPECIFIED]", "unknown notification type"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := New().Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: tc.yaml})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Configure = %v, want InvalidArgument with %q", err, tc.want)
			}
		})
	}
	resp, err := New().Configure(context.Background(), &configv1.ConfigureRequest{})
	if err != nil || resp.GetBuildInfo() == "" {
		t.Fatalf("Configure(\"\") = %v, %v", resp, err)
	}
	if _, err := New().Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: "types: [email, web]\nsink: stderr"}); err != nil {
		t.Fatalf("lower-case types: %v", err)
	}
}

func TestHostLogSink(t *testing.T) {
	var buf bytes.Buffer
	p := New(WithDefaultSink(SinkHostLog))
	p.SetLogger(hclog.New(&hclog.LoggerOptions{Output: &buf, JSONFormat: true}))
	if _, err := p.Configure(context.Background(), &configv1.ConfigureRequest{}); err != nil {
		t.Fatal(err)
	}
	resp := send(t, p, &notifv1.SendNotificationRequest{NotificationType: notifv1.NotificationType_NOTIFICATION_TYPE_EMAIL,
		Recipients: []string{"bob@example.org"}, Subject: "s", Body: "secret body text"})
	if !resp.GetSuccess() {
		t.Fatal(resp.GetMessage())
	}
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if line["@message"] != "notification" || line["recipients"] != "b***@example.org" {
		t.Fatalf("host log line = %v", line)
	}
}

func TestStdoutSink(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	orig := os.Stdout
	os.Stdout = w // the sink must resolve os.Stdout at write time
	t.Cleanup(func() { os.Stdout = orig })
	p := New()
	resp := send(t, p, &notifv1.SendNotificationRequest{NotificationType: notifv1.NotificationType_NOTIFICATION_TYPE_TEXT, Recipients: []string{"+123456"}, Body: "hi"})
	_ = w.Close()
	os.Stdout = orig
	if !resp.GetSuccess() {
		t.Fatal(resp.GetMessage())
	}
	out, _ := bufio.NewReader(r).ReadString('\n')
	var rec Record
	if err := json.Unmarshal([]byte(out), &rec); err != nil || rec.Type != "TEXT" || rec.BodyPreview != "hi" {
		t.Fatalf("stdout line %q: %v", out, err)
	}
}

func TestConcurrentWritesStayWhole(t *testing.T) {
	p, path := fileSink(t, "")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				resp, _ := p.SendNotification(context.Background(), &notifv1.SendNotificationRequest{
					NotificationType: notifv1.NotificationType_NOTIFICATION_TYPE_EMAIL,
					Recipients:       []string{"ops@example.org"}, Body: strings.Repeat("b", 4000)})
				if !resp.GetSuccess() {
					t.Error(resp.GetMessage())
				}
			}
		})
		wg.Go(func() {
			for range 20 {
				_, _ = p.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: "sink: file\npath: " + path})
			}
		})
	}
	wg.Wait()
	if n := len(readRecords(t, path)); n != 400 {
		t.Fatalf("%d records, want 400", n)
	}
}

func TestTruncateUTF8(t *testing.T) {
	s, cut := truncateUTF8("héllo", 2) // 'é' is 2 bytes at offset 1
	if s != "h" || !cut {
		t.Fatalf("truncateUTF8 = %q, %v", s, cut)
	}
}

func TestMaskRecipient(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.org":              "a***@example.org",
		"https://hooks.example/T/B/tok":  "https://hooks.example/***",
		"https://user:pw@h.example:8443": "https://h.example:8443/***",
		"https://h.example":              "https://h.example",
		"12":                             "***",
		"channel-ops":                    "***ps",
		"ünïcode@x.y":                    "ü***@x.y",
	} {
		if got := MaskRecipient(in); got != want {
			t.Errorf("MaskRecipient(%q) = %q, want %q", in, got, want)
		}
	}
}
