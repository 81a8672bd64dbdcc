package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/openkcm/plugin-sdk/api"
	"github.com/openkcm/plugin-sdk/pkg/catalog"
	certificate_issuerv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"
	identity_managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/identity_management/v1"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	notificationv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"
	systeminformationv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
)

var (
	// ErrNotConfigured is returned by an accessor when no plugin of the
	// requested type (and name) was loaded.
	ErrNotConfigured = errors.New("plugin not configured")
	// ErrNoDefaultKeystore: no KeystoreInstanceKeyOperation plugin carries the
	// default_keystore tag (CMK: "no keystore provider selected as default").
	ErrNoDefaultKeystore = fmt.Errorf("no keystore provider selected as default: %w", ErrNotConfigured)
	// ErrMultipleDefaultKeystores: more than one operations plugin is tagged
	// default_keystore (CMK: "multiple keystore providers found as default").
	ErrMultipleDefaultKeystores = errors.New("multiple keystore providers found as default")
)

// HealthService is the gRPC health service name go-plugin marks SERVING in
// every plugin process and that CMK's plugin watcher checks.
const HealthService = "plugin"

// Config describes what Load loads.
type Config struct {
	// Plugins are the entries to load, typically from LoadProfile.
	Plugins []catalog.PluginConfig
	// BuiltIns are the in-process plugins entries without `path:` resolve
	// against (by name and type), typically builtin.All().
	BuiltIns []catalog.BuiltInPlugin
	// Logger receives catalog and plugin logs; slog.Default() when nil.
	Logger *slog.Logger
	// SkipRequestValidation turns off the host-side protovalidate check of
	// requests. It is on by default because CMK's facades validate every
	// request; contract suites switch it off to see what the plugin itself
	// does with an invalid request.
	SkipRequestValidation bool
	// SupportedRegions, when non-nil, is injected into the YAML of every
	// KeystoreProvider plugin as a top-level `supportedregions` SourceRef, as
	// CMK does from its keystorePool configuration.
	SupportedRegions []SupportedRegion
}

// SupportedRegion mirrors CMK's keystorePool.supportedRegions entries.
type SupportedRegion struct {
	Name          string `json:"name"`
	TechnicalName string `json:"technicalName"`
}

// Plugins is a loaded catalog with typed accessors. It is safe for concurrent
// use; Close unloads every plugin (and stops external processes).
type Plugins struct {
	catalog *catalog.Catalog
	repo    *Repository
	log     *slog.Logger

	closeOnce sync.Once
	closeErr  error
}

// Load loads every enabled plugin of cfg through catalog.New, configures it
// with its yamlConfiguration and checks the type constraints. On error
// nothing stays loaded.
func Load(ctx context.Context, cfg Config) (*Plugins, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	configs := make([]catalog.PluginConfig, 0, len(cfg.Plugins))
	for i, pc := range cfg.Plugins {
		if err := validateEntry(pc); err != nil {
			return nil, fmt.Errorf("plugin entry %d: %w", i, err)
		}
		if pc.Type == TypeKeystoreManagement && cfg.SupportedRegions != nil && !pc.Disabled {
			merged, err := InjectSupportedRegions(pc.YamlConfiguration, cfg.SupportedRegions)
			if err != nil {
				return nil, fmt.Errorf("plugin %q: %w", pc.Name, err)
			}
			pc.YamlConfiguration = merged
		}
		configs = append(configs, pc)
	}

	repo := NewRepository(!cfg.SkipRequestValidation)
	cat, err := catalog.New(ctx, catalog.Config{Logger: log, PluginConfigs: configs}, repo, cfg.BuiltIns...)
	if err != nil {
		return nil, fmt.Errorf("loading plugins: %w", err)
	}
	return &Plugins{catalog: cat, repo: repo, log: log}, nil
}

// Catalog exposes the underlying SDK catalog (e.g. for Reconfigure).
func (p *Plugins) Catalog() *catalog.Catalog { return p.catalog }

// Info lists every loaded plugin.
func (p *Plugins) Info() []api.Info { return p.catalog.ListPluginInfo() }

// Close unloads all plugins: Deinit, then the process is killed for external
// plugins. It is idempotent.
func (p *Plugins) Close() error {
	p.closeOnce.Do(func() { p.closeErr = p.catalog.Close() })
	return p.closeErr
}

func only[C any](r *pluginRepo[C], typ string) (C, error) {
	var zero C
	if len(r.bound) == 0 {
		return zero, fmt.Errorf("%s: %w", typ, ErrNotConfigured)
	}
	return r.bound[0].client, nil
}

func byName[C any](r *pluginRepo[C], typ, name string) (*facade[C], error) {
	for _, f := range r.bound {
		if f.Info != nil && f.Name() == name {
			return f, nil
		}
	}
	return nil, fmt.Errorf("%s %q: %w", typ, name, ErrNotConfigured)
}

// Identity returns the IdentityManagementService plugin.
func (p *Plugins) Identity() (identity_managementv1.IdentityManagementServiceClient, error) {
	return only(p.repo.identity, TypeIdentity)
}

// CertificateIssuer returns the CertificateIssuerService plugin.
func (p *Plugins) CertificateIssuer() (certificate_issuerv1.CertificateIssuerServiceClient, error) {
	return only(p.repo.certIssuer, TypeCertificateIssuer)
}

// Notification returns the NotificationService plugin.
func (p *Plugins) Notification() (notificationv1.NotificationServiceClient, error) {
	return only(p.repo.notification, TypeNotification)
}

// SystemInformation returns the SystemInformationService plugin.
func (p *Plugins) SystemInformation() (systeminformationv1.SystemInformationServiceClient, error) {
	return only(p.repo.sysInfo, TypeSystemInformation)
}

// KeystoreManagement returns the KeystoreProvider plugin called name.
func (p *Plugins) KeystoreManagement(name string) (managementv1.KeystoreProviderClient, error) {
	f, err := byName(p.repo.ksManagement, TypeKeystoreManagement, name)
	if err != nil {
		return nil, err
	}
	return f.client, nil
}

// KeyOperations returns the KeystoreInstanceKeyOperation plugin called name.
func (p *Plugins) KeyOperations(name string) (operationsv1.KeystoreInstanceKeyOperationClient, error) {
	f, err := byName(p.repo.keyOperations, TypeKeyOperations, name)
	if err != nil {
		return nil, err
	}
	return f.client, nil
}

// DefaultKeystore returns the one KeystoreInstanceKeyOperation plugin tagged
// default_keystore (case-insensitive), as CMK selects it. Its name is also
// the name of the matching KeystoreProvider.
func (p *Plugins) DefaultKeystore() (string, operationsv1.KeystoreInstanceKeyOperationClient, error) {
	var found []*facade[operationsv1.KeystoreInstanceKeyOperationClient]
	for _, f := range p.repo.keyOperations.bound {
		if HasTag(f.Info, TagDefaultKeystore) {
			found = append(found, f)
		}
	}
	switch len(found) {
	case 0:
		return "", nil, ErrNoDefaultKeystore
	case 1:
		return found[0].Name(), found[0].client, nil
	default:
		names := make([]string, 0, len(found))
		for _, f := range found {
			names = append(names, f.Name())
		}
		return "", nil, fmt.Errorf("%w: %s", ErrMultipleDefaultKeystores, strings.Join(names, ", "))
	}
}

// KeystoreNames lists the names of the loaded KeystoreInstanceKeyOperation
// plugins, sorted.
func (p *Plugins) KeystoreNames() []string { return p.keystoreNames("") }

// HYOKKeystores lists the names of operations plugins tagged hyok, sorted
// (the list CMK offers for HYOK keys).
func (p *Plugins) HYOKKeystores() []string { return p.keystoreNames(TagHYOK) }

func (p *Plugins) keystoreNames(tag string) []string {
	var names []string
	for _, f := range p.repo.keyOperations.bound {
		if tag == "" || HasTag(f.Info, tag) {
			names = append(names, f.Name())
		}
	}
	sort.Strings(names)
	return names
}

// HasTag reports whether info carries tag, compared case-insensitively like
// CMK's utils/plugins.HasTag.
func HasTag(info api.Info, tag string) bool {
	if info == nil {
		return false
	}
	return slices.ContainsFunc(info.Tags(), func(t string) bool { return strings.EqualFold(t, tag) })
}

// Conn returns the raw gRPC connection of a loaded plugin. For an external
// plugin this is go-plugin's connection to the child process.
func (p *Plugins) Conn(pluginType, name string) (grpc.ClientConnInterface, error) {
	if !IsKnownType(pluginType) {
		return nil, fmt.Errorf("unsupported plugin type %q", pluginType)
	}
	pl := p.catalog.LookupByTypeAndName(pluginType, name)
	if pl == nil {
		return nil, fmt.Errorf("%s %q: %w", pluginType, name, ErrNotConfigured)
	}
	return pl.ClientConnection(), nil
}

// ConfigClient returns a client of the plugin's Config service, for
// reconfiguring it at runtime.
func (p *Plugins) ConfigClient(pluginType, name string) (configv1.ConfigClient, error) {
	conn, err := p.Conn(pluginType, name)
	if err != nil {
		return nil, err
	}
	return configv1.NewConfigClient(conn), nil
}

// CheckHealth asks one plugin's gRPC health service for the "plugin" service
// with CMK's 5 s timeout. As in CMK's watcher, Unimplemented counts as
// healthy (builtin plugins have no health service).
func (p *Plugins) CheckHealth(ctx context.Context, pluginType, name string) error {
	conn, err := p.Conn(pluginType, name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: HealthService})
	switch {
	case status.Code(err) == codes.Unimplemented:
		return nil
	case err != nil:
		return fmt.Errorf("%s %q health check: %w", pluginType, name, err)
	case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
		return fmt.Errorf("%s %q health check: status %s", pluginType, name, resp.GetStatus())
	}
	return nil
}

// CheckAllHealth runs CheckHealth on every loaded plugin and joins the errors.
func (p *Plugins) CheckAllHealth(ctx context.Context) error {
	var errs []error
	for _, info := range p.Info() {
		errs = append(errs, p.CheckHealth(ctx, info.Type(), info.Name()))
	}
	return errors.Join(errs...)
}

// validateEntry catches mistakes early with clearer messages than the SDK's.
func validateEntry(pc catalog.PluginConfig) error {
	if strings.TrimSpace(pc.Name) == "" {
		return errors.New("missing name")
	}
	if pc.Type == "" {
		return fmt.Errorf("plugin %q: missing type (one of %s)", pc.Name, strings.Join(Types(), ", "))
	}
	if !IsKnownType(pc.Type) {
		return fmt.Errorf("plugin %q: unsupported plugin type %q (one of %s)", pc.Name, pc.Type, strings.Join(Types(), ", "))
	}
	return nil
}
