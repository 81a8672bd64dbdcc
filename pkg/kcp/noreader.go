package kcp

import (
	"context"
	"errors"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ErrNoCluster is returned by NoClusterReader.
var ErrNoCluster = errors.New("on kcp a read by namespace and name must name its workspace; this reader cannot")

// NoClusterReader refuses every read. It stands in where code built for one cluster reads by namespace/name only
// (the key chain's service-key API), so that in kcp mode such a read fails clearly instead of reading whatever
// workspace a configuration happens to address.
type NoClusterReader struct{}

// Get implements client.Reader.
func (NoClusterReader) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return ErrNoCluster
}

// List implements client.Reader.
func (NoClusterReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return ErrNoCluster
}
