// Package keyversions holds the request and response types of GetKeyVersions, the RPC plugin-sdk v0.15.0 adds to
// KeystoreInstanceKeyOperation. The pinned SDK (v0.14.0) has no such RPC, so keystore backends implement it as a Go
// method with these stand-in types; their getters match what CMK calls (GetVersions, GetVersionId,
// GetCreationTime, GetStatus). On the v0.15 bump, backends switch to operationsv1's generated types and this package
// is deleted (docs/plugins.md, "GetKeyVersions and the v0.15 bump").
package keyversions

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
)

// GetKeyVersionsRequest names the key whose versions are listed.
type GetKeyVersionsRequest struct {
	Parameters *operationsv1.RequestParameters
}

// GetParameters returns the request parameters (nil-safe, like generated getters).
func (r *GetKeyVersionsRequest) GetParameters() *operationsv1.RequestParameters {
	if r == nil {
		return nil
	}
	return r.Parameters
}

// KeyVersion is one version of a key.
type KeyVersion struct {
	VersionId    string //nolint:revive // matches the generated field name
	CreationTime *timestamppb.Timestamp
	Status       string
}

// GetVersionId returns the version id.
func (v *KeyVersion) GetVersionId() string { //nolint:revive // matches the generated getter
	if v == nil {
		return ""
	}
	return v.VersionId
}

// GetCreationTime returns when the version was created.
func (v *KeyVersion) GetCreationTime() *timestamppb.Timestamp {
	if v == nil {
		return nil
	}
	return v.CreationTime
}

// GetStatus returns the version's status.
func (v *KeyVersion) GetStatus() string {
	if v == nil {
		return ""
	}
	return v.Status
}

// GetKeyVersionsResponse lists versions oldest first.
type GetKeyVersionsResponse struct {
	Versions []*KeyVersion
}

// GetVersions returns the versions.
func (r *GetKeyVersionsResponse) GetVersions() []*KeyVersion {
	if r == nil {
		return nil
	}
	return r.Versions
}
