// Package testplugin is a minimal SystemInformationService plugin used to test
// the harness itself (not a product plugin).
package testplugin

import (
	"context"
	"fmt"
	"sync"

	"sigs.k8s.io/yaml"

	"github.com/openkcm/plugin-sdk/pkg/catalog"
	systeminformationv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
)

// Plugin answers Get with its configured greeting and the request fields.
type Plugin struct {
	systeminformationv1.UnimplementedSystemInformationServiceServer
	configv1.UnimplementedConfigServer

	mu       sync.RWMutex
	greeting string
}

type config struct {
	Greeting string `json:"greeting"`
}

func (p *Plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	var c config
	if err := yaml.UnmarshalStrict([]byte(req.GetYamlConfiguration()), &c); err != nil {
		return nil, fmt.Errorf("invalid testplugin configuration: %w", err)
	}
	if c.Greeting == "" {
		c.Greeting = "hello"
	}
	p.mu.Lock()
	p.greeting = c.Greeting
	p.mu.Unlock()
	build := `{"name":"testplugin"}`
	return &configv1.ConfigureResponse{BuildInfo: &build}, nil
}

func (p *Plugin) Get(_ context.Context, req *systeminformationv1.GetRequest) (*systeminformationv1.GetResponse, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return &systeminformationv1.GetResponse{Metadata: map[string]string{
		"greeting": p.greeting, "id": req.GetId(), "type": req.GetType(),
	}}, nil
}

// BuiltIn returns the plugin as a builtin called name.
func BuiltIn(name string) catalog.BuiltInPlugin {
	p := &Plugin{}
	return catalog.MakeBuiltIn(name, systeminformationv1.SystemInformationServicePluginServer(p), configv1.ConfigServiceServer(p))
}
