package main

import (
	"errors"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// A dependents' kind whose CRD is gone counts as "no dependents": otherwise an uninstall that deletes the CRDs
// would leave every Tenant and Account (and so their CRDs) terminating forever.
func TestKindGone(t *testing.T) {
	gr := schema.GroupResource{Group: "cmk.apeiro.io", Resource: "serviceencryptionkeys"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"not found", apierrors.NewNotFound(gr, ""), true},
		{"wrapped not found", fmt.Errorf("listing keys: %w", apierrors.NewNotFound(gr, "")), true},
		{"no kind match", &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "cmk.apeiro.io", Kind: "ServiceEncryptionKey"}}, true},
		{"forbidden", apierrors.NewForbidden(gr, "", errors.New("no")), false},
		{"timeout", apierrors.NewTimeoutError("slow", 1), false},
		{"plain", errors.New("connection refused"), false},
	} {
		if got := kindGone(tc.err); got != tc.want {
			t.Errorf("%s: kindGone = %v, want %v", tc.name, got, tc.want)
		}
	}
}
