package host

import (
	"context"

	"buf.build/go/protovalidate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/openkcm/plugin-sdk/api"
	"github.com/openkcm/plugin-sdk/pkg/plugin"
	certificate_issuerv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"
	identity_managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/identity_management/v1"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	notificationv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"
	systeminformationv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"
)

// Plugin type names. They are the `type:` values of a profile entry and the
// go-plugin handshake cookies, so they must be the SDK's generated constants.
const (
	TypeIdentity           = identity_managementv1.Type
	TypeCertificateIssuer  = certificate_issuerv1.Type
	TypeKeystoreManagement = managementv1.Type
	TypeKeyOperations      = operationsv1.Type
	TypeSystemInformation  = systeminformationv1.Type
	TypeNotification       = notificationv1.Type
)

// Tags with a meaning in CMK (compared case-insensitively).
const (
	// TagDefaultKeystore marks the one KeystoreInstanceKeyOperation plugin CMK
	// uses for new keystores; its KeystoreProvider must share its name.
	TagDefaultKeystore = "default_keystore"
	// TagHYOK marks keystore backends offered for hold-your-own-key.
	TagHYOK = "hyok"
)

// Types lists every plugin type the host accepts, in a stable order.
func Types() []string {
	return []string{
		TypeIdentity, TypeCertificateIssuer, TypeKeystoreManagement,
		TypeKeyOperations, TypeSystemInformation, TypeNotification,
	}
}

// IsKnownType reports whether t is one of Types().
func IsKnownType(t string) bool {
	for _, k := range Types() {
		if k == t {
			return true
		}
	}
	return false
}

// facade is the host-side binding of one loaded plugin for one service. The
// catalog calls InitInfo, InitLog and InitClient; we keep the raw connection
// (for health checks) next to the typed client.
type facade[C any] struct {
	plugin.Facade

	serviceName string
	newClient   func(grpc.ClientConnInterface) C
	validate    bool

	conn   grpc.ClientConnInterface
	client C
}

func (f *facade[C]) GRPCServiceName() string { return f.serviceName }

// Version is the facade version; all SDK v0.14 services are version 1.
func (f *facade[C]) Version() uint { return 1 }

func (f *facade[C]) InitClient(conn grpc.ClientConnInterface) any {
	f.conn = conn
	var cc grpc.ClientConnInterface = conn
	if f.validate {
		cc = validatingConn{ClientConnInterface: conn}
	}
	f.client = f.newClient(cc)
	return f.client
}

// validatingConn runs protovalidate on every request before it leaves the
// host, as CMK's wrapper facades do (they call protovalidate.Validate on the
// request first). Builtin plugins have no server-side validation interceptor,
// so without this a builtin would accept requests CMK would never send.
type validatingConn struct {
	grpc.ClientConnInterface
}

func (c validatingConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if m, ok := args.(proto.Message); ok {
		if err := protovalidate.Validate(m); err != nil {
			return status.Errorf(codes.InvalidArgument, "request validation failed: %v", err)
		}
	}
	return c.ClientConnInterface.Invoke(ctx, method, args, reply, opts...)
}

type version struct{ newFacade func() api.Facade }

func (v version) New() api.Facade  { return v.newFacade() }
func (v version) Deprecated() bool { return false }

// pluginRepo collects the facades of one plugin type in load order.
type pluginRepo[C any] struct {
	constraints api.Constraints
	serviceName string
	newClient   func(grpc.ClientConnInterface) C
	validate    bool
	bound       []*facade[C]
}

func (r *pluginRepo[C]) newFacade() api.Facade {
	return &facade[C]{serviceName: r.serviceName, newClient: r.newClient, validate: r.validate}
}

func (r *pluginRepo[C]) Binder() any {
	return func(f *facade[C]) { r.bound = append(r.bound, f) }
}

func (r *pluginRepo[C]) Versions() []api.Version {
	return []api.Version{version{newFacade: r.newFacade}}
}

func (r *pluginRepo[C]) Clear() { r.bound = nil }

func (r *pluginRepo[C]) Constraints() api.Constraints { return r.constraints }

// Repository is the api.Repository handed to catalog.New: the six plugin
// types with CMK's constraints.
type Repository struct {
	identity      *pluginRepo[identity_managementv1.IdentityManagementServiceClient]
	certIssuer    *pluginRepo[certificate_issuerv1.CertificateIssuerServiceClient]
	notification  *pluginRepo[notificationv1.NotificationServiceClient]
	sysInfo       *pluginRepo[systeminformationv1.SystemInformationServiceClient]
	ksManagement  *pluginRepo[managementv1.KeystoreProviderClient]
	keyOperations *pluginRepo[operationsv1.KeystoreInstanceKeyOperationClient]
}

var _ api.Repository = (*Repository)(nil)

// NewRepository returns an empty repository. validate turns on host-side
// protovalidate checks of requests (see Config.SkipRequestValidation).
func NewRepository(validate bool) *Repository {
	return &Repository{
		identity: &pluginRepo[identity_managementv1.IdentityManagementServiceClient]{
			constraints: api.MaybeOne(), serviceName: identity_managementv1.GRPCServiceFullName,
			newClient: identity_managementv1.NewIdentityManagementServiceClient, validate: validate,
		},
		certIssuer: &pluginRepo[certificate_issuerv1.CertificateIssuerServiceClient]{
			constraints: api.MaybeOne(), serviceName: certificate_issuerv1.GRPCServiceFullName,
			newClient: certificate_issuerv1.NewCertificateIssuerServiceClient, validate: validate,
		},
		notification: &pluginRepo[notificationv1.NotificationServiceClient]{
			constraints: api.MaybeOne(), serviceName: notificationv1.GRPCServiceFullName,
			newClient: notificationv1.NewNotificationServiceClient, validate: validate,
		},
		sysInfo: &pluginRepo[systeminformationv1.SystemInformationServiceClient]{
			constraints: api.MaybeOne(), serviceName: systeminformationv1.GRPCServiceFullName,
			newClient: systeminformationv1.NewSystemInformationServiceClient, validate: validate,
		},
		ksManagement: &pluginRepo[managementv1.KeystoreProviderClient]{
			constraints: api.ZeroOrMore(), serviceName: managementv1.GRPCServiceFullName,
			newClient: managementv1.NewKeystoreProviderClient, validate: validate,
		},
		keyOperations: &pluginRepo[operationsv1.KeystoreInstanceKeyOperationClient]{
			constraints: api.ZeroOrMore(), serviceName: operationsv1.GRPCServiceFullName,
			newClient: operationsv1.NewKeystoreInstanceKeyOperationClient, validate: validate,
		},
	}
}

// Plugins implements api.Repository.
func (r *Repository) Plugins() map[string]api.PluginRepo {
	return map[string]api.PluginRepo{
		TypeIdentity:           r.identity,
		TypeCertificateIssuer:  r.certIssuer,
		TypeNotification:       r.notification,
		TypeSystemInformation:  r.sysInfo,
		TypeKeystoreManagement: r.ksManagement,
		TypeKeyOperations:      r.keyOperations,
	}
}

// Services implements api.Repository. The Config service is bound by the
// catalog itself, so no extra service repositories are needed.
func (r *Repository) Services() []api.ServiceRepo { return nil }
