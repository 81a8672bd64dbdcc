// Package kcp connects apeiro-cmk to a kcp control plane (the Platform Mesh) and keeps an in-memory view of it:
//
//   - the workspace tree, from a multi-cluster (wildcard /clusters/*) list/watch of Workspaces and LogicalClusters;
//   - tenants derived from that tree: every workspace below Options.TenantsRoot (except the platform workspace's
//     subtree) is a tenant whose ID is its workspace path; it is Nested when its parent workspace is a tenant and
//     Root otherwise, and Shadow when its Workspace object carries AnnotationShadowOf;
//   - Accounts and ServiceEncryptionKeys across all workspaces, owned by the tenant of their logical cluster;
//   - the Platform Mesh configuration (regions and the audiences allowed in each) from one ConfigMap in the platform
//     workspace, applied live; a malformed revision is reported with an Event on the ConfigMap and the previous good
//     configuration stays in force.
//
// The view feeds the same hierarchy.Model the namespace-based informers feed on plain Kubernetes (Graph implements
// admission.Source), answers the SystemInformationService plugin (pkg/plugins/sis/resourcegraph), and implements
// the webhook's region/audience policy (MeshPolicy). Nothing on the admission path waits on kcp: every answer comes
// from memory, and when kcp is unreachable the last known state keeps applying, its age exported as a metric.
//
// kcp's own clientset and informers do not compile with this module's Kubernetes libraries, so the package uses
// kcp's API types with client-go's dynamic client against /clusters/<path> URLs. docs/kcp.md has the details.
package kcp
