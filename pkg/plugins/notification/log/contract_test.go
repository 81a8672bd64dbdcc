package log_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/notification/contracttest"
	notificationlog "github.com/apeirora/apeiro-cmk/pkg/plugins/notification/log"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
)

func TestMain(m *testing.M) { plugintest.Main(m) }

func TestContract(t *testing.T) {
	dir := t.TempDir()
	sink := filepath.Join(dir, "notifications.jsonl")
	// A path below a regular file can never be created (even as root).
	blocker := filepath.Join(dir, "not-a-dir")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	contracttest.Run(t, contracttest.Config{
		BuiltIn:            notificationlog.NewBuiltIn,
		BinaryPackage:      "github.com/apeirora/apeiro-cmk/cmd/plugins/notification-log",
		YAML:               "sink: file\npath: " + sink + "\nmaxBodyBytes: 4096\nbodyPreviewBytes: 64\n",
		ConfigOptional:     true,
		InvalidYAMLMessage: "notification log: invalid configuration",
		MaxBodyBytes:       4096,
		UndeliverableYAML:  "sink: file\npath: " + filepath.Join(blocker, "n.jsonl") + "\n",
		Sink: func(t *testing.T) string {
			b, err := os.ReadFile(sink)
			if err != nil {
				t.Fatalf("read sink: %v", err)
			}
			// Every line must be one JSON object.
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				if !strings.HasPrefix(line, "{") || !strings.HasSuffix(line, "}") {
					t.Fatalf("sink line is not a JSON object: %q", line)
				}
			}
			return string(b)
		},
	})
}
