package plugintest_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	systeminformationv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest/internal/testplugin"
)

func TestMain(m *testing.M) { plugintest.Main(m) }

func spec(yaml string) plugintest.Spec {
	return plugintest.Spec{
		Type:    host.TypeSystemInformation,
		Name:    "TEST",
		YAML:    yaml,
		Tags:    []string{"x"},
		BuiltIn: func() catalog.BuiltInPlugin { return testplugin.BuiltIn("TEST") },
		Package: "github.com/apeirora/apeiro-cmk/pkg/plugins/plugintest/internal/testplugin/cmd",
	}
}

func TestHarnessBothModes(t *testing.T) {
	plugintest.ForEachModeLoaded(t, spec("greeting: hi"), func(t *testing.T, l *plugintest.Loaded) {
		sis, err := l.SystemInformation()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := sis.Get(context.Background(), &systeminformationv1.GetRequest{Id: "abc", Type: "sys"})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.GetMetadata()["greeting"]; got != "hi" {
			t.Fatalf("greeting = %q, want hi (Configure not applied?)", got)
		}
		// The host validates requests like CMK's facades (SIS id min_len 3).
		_, err = sis.Get(context.Background(), &systeminformationv1.GetRequest{Id: "a", Type: "sys"})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("short id: got %v, want InvalidArgument", err)
		}
		if infos := l.Info(); len(infos) != 1 || infos[0].Name() != "TEST" || infos[0].Tags()[0] != "x" {
			t.Fatalf("unexpected info %+v", infos)
		}
		if l.Mode == plugintest.ModeExternal && len(l.Processes()) != 1 {
			t.Fatalf("want exactly one child process, got %v", l.Processes())
		}
		plugintest.CheckHealth(t, l)
		plugintest.CheckShutdown(t, l)
		if err := l.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func TestHarnessConfigureEmptyAndInvalid(t *testing.T) {
	for _, mode := range spec("").Modes() {
		t.Run(string(mode), func(t *testing.T) {
			l := plugintest.Load(t, spec(""), mode)
			sis, _ := l.SystemInformation()
			resp, err := sis.Get(context.Background(), &systeminformationv1.GetRequest{Id: "abc", Type: "sys"})
			if err != nil || resp.GetMetadata()["greeting"] != "hello" {
				t.Fatalf("Configure(\"\") default: %v %v", resp, err)
			}
			_, err = plugintest.TryLoad(t, spec("greeting: [unclosed"), mode)
			if err == nil || !strings.Contains(err.Error(), "failed to configure plugin") {
				t.Fatalf("invalid YAML: got %v", err)
			}
		})
	}
}
