package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/go-logr/logr"
	"github.com/openkcm/plugin-sdk/pkg/catalog"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/pluginbacked"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/builtin"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/profiles"
)

// plugins wraps the loaded catalog with the adapters the admission handlers use.
type plugins struct{ *host.Plugins }

// loadPlugins loads the profile (or the embedded apeiro-profile) through the plugin-sdk catalog.
func loadPlugins(ctx context.Context, o options) (*plugins, error) {
	var (
		entries []catalog.PluginConfig
		err     error
	)
	if o.profile == "" {
		entries, err = host.ParseProfile(profiles.ApeiroBuiltin)
	} else {
		entries, err = host.LoadProfile(o.profile)
	}
	if err != nil {
		return nil, fmt.Errorf("reading plugin profile: %w", err)
	}
	p, err := host.Load(ctx, host.Config{
		Plugins:  entries,
		BuiltIns: builtin.All(),
		Logger:   slog.New(logr.ToSlogHandler(ctrl.Log.WithName("plugins"))),
	})
	if err != nil {
		return nil, err
	}
	return &plugins{p}, nil
}

func (p *plugins) describe() string {
	var names []string
	for _, i := range p.Info() {
		names = append(names, i.Type()+"/"+i.Name())
	}
	return strings.Join(names, ",")
}

// regionPolicy: an explicit --allowed-regions list wins; otherwise the SIS plugin of the profile when it knows
// regions; otherwise any region.
func regionPolicy(allowed, source string, p *plugins) (admission.RegionPolicy, error) {
	switch source {
	case "static":
		return staticRegions(allowed), nil
	case "sis":
		sis, err := p.SystemInformation()
		if err != nil {
			return nil, fmt.Errorf("--region-source=sis: %w", err)
		}
		return &pluginbacked.RegionPolicy{SIS: sis}, nil
	default:
		return nil, fmt.Errorf("--region-source must be static or sis, not %q", source)
	}
}

func staticRegions(allowed string) admission.StaticRegionPolicy {
	pol := admission.StaticRegionPolicy{Regions: map[string][]string{}}
	for _, r := range splitList(allowed) {
		name, aud, hasAud := strings.Cut(r, "=")
		var list []string
		if hasAud {
			list = []string{}
			for _, a := range strings.Split(aud, "|") {
				if a = strings.TrimSpace(a); a != "" {
					list = append(list, a)
				}
			}
		}
		pol.Regions[strings.TrimSpace(name)] = list
	}
	return pol
}
