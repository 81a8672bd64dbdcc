package identity

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
)

// KubeKeyLookup finds ServiceEncryptionKeys in the API (through the manager's cache). The owning tenant is the
// tenant label of the key's namespace, the same source of truth the admission webhook uses; a label on the key
// itself is not trusted.
type KubeKeyLookup struct{ Reader client.Reader }

var _ KeyLookup = KubeKeyLookup{}

// Lookup implements KeyLookup.
func (l KubeKeyLookup) Lookup(ctx context.Context, namespace, name string) (*KeyGrant, error) {
	var k cmkv1.ServiceEncryptionKey
	if err := l.Reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &k); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, ErrNoSuchKey
		}
		return nil, fmt.Errorf("reading ServiceEncryptionKey %s/%s: %w", namespace, name, err)
	}
	var ns corev1.Namespace
	if err := l.Reader.Get(ctx, types.NamespacedName{Name: namespace}, &ns); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, ErrNoSuchKey
		}
		return nil, fmt.Errorf("reading namespace %s: %w", namespace, err)
	}
	return &KeyGrant{Namespace: namespace, Name: name, Tenant: ns.Labels[cmkv1.TenantLabel], WorkloadIdentities: k.Spec.WorkloadIdentities}, nil
}

// TenantIssuers lists the OIDC providers of all Tenants (spec.oidcProvider) as tenant-scoped issuers. A provider
// without audiences is skipped: accepting any audience would accept tokens minted for other services.
func TenantIssuers(ctx context.Context, r client.Reader) (issuers []IssuerConfig, skipped []string, err error) {
	var list cmkv1.TenantList
	if err := r.List(ctx, &list); err != nil {
		return nil, nil, fmt.Errorf("listing Tenants: %w", err)
	}
	for _, t := range list.Items {
		p := t.Spec.OIDCProvider
		if p == nil || p.Issuer == "" {
			continue
		}
		if len(p.Audiences) == 0 {
			skipped = append(skipped, t.Name)
			continue
		}
		issuers = append(issuers, IssuerConfig{URL: p.Issuer, JWKSURL: p.JWKSURI, Audiences: p.Audiences, Tenant: t.Name})
	}
	return issuers, skipped, nil
}
