package openbao

import (
	"github.com/openkcm/plugin-sdk/pkg/catalog"
	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
)

// NewOperationsBuiltIn returns a fresh operations plugin as a builtin named name (the profile name, "OPENBAO").
func NewOperationsBuiltIn(name string) catalog.BuiltInPlugin {
	o := NewOperations()
	return catalog.MakeBuiltIn(name, operationsv1.KeystoreInstanceKeyOperationPluginServer(o), configv1.ConfigServiceServer(o))
}

// NewManagementBuiltIn returns a fresh management plugin as a builtin.
func NewManagementBuiltIn(name string) catalog.BuiltInPlugin {
	m := NewManagement()
	return catalog.MakeBuiltIn(name, managementv1.KeystoreProviderPluginServer(m), configv1.ConfigServiceServer(m))
}
