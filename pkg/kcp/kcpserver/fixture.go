package kcpserver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
)

// MeshConfig is the fixture's Platform Mesh configuration.
const MeshConfig = `regions:
  - name: eu-central
    audiences: [cmk, apeiro-webhook]
  - name: us-east
`

// World is the standard fixture: the platform workspace with MeshConfig, and the tenant workspaces
//
//	root:acme      Root tenant "acme"        Account keys/main
//	root:acme:eu   Nested tenant "acme.eu"   (child of acme)
//	root:acme-dr   Shadow tenant "acme-dr"   (shadow of acme, by annotation on its Workspace)
//	root:globex    Root tenant "globex"      Account keys/main
//
// each with the product CRDs and a namespace "keys".
type World struct {
	Server                                 *Server
	Platform, Acme, AcmeEU, AcmeDR, Globex string
	Root                                   string // repository root
}

// Tenants lists the tenant workspace paths.
func (w *World) Tenants() []string { return []string{w.Acme, w.AcmeEU, w.AcmeDR, w.Globex} }

// Provision provisions the fixture (also used by `make run-kcp`).
func Provision(ctx context.Context, s *Server) (*World, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	w := &World{Server: s, Root: root}
	b := s.Base
	if w.Platform, err = CreateWorkspace(ctx, b, "root", "platform", nil); err != nil {
		return nil, err
	}
	if err := PutMeshConfig(ctx, b, w.Platform, "default", "platform-mesh", MeshConfig); err != nil {
		return nil, err
	}
	if w.Acme, err = CreateWorkspace(ctx, b, "root", "acme", nil); err != nil {
		return nil, err
	}
	if w.AcmeEU, err = CreateWorkspace(ctx, b, w.Acme, "eu", nil); err != nil {
		return nil, err
	}
	if w.AcmeDR, err = CreateWorkspace(ctx, b, "root", "acme-dr", map[string]string{kcp.AnnotationShadowOf: w.Acme}); err != nil {
		return nil, err
	}
	if w.Globex, err = CreateWorkspace(ctx, b, "root", "globex", nil); err != nil {
		return nil, err
	}
	crds, err := CRDFiles(root)
	if err != nil {
		return nil, err
	}
	for _, p := range w.Tenants() {
		if err := ApplyCRDs(ctx, b, p, crds...); err != nil {
			return nil, err
		}
		if err := EnsureNamespace(ctx, b, p, "keys"); err != nil {
			return nil, err
		}
	}
	for p, tenant := range map[string]string{w.Acme: "acme", w.Globex: "globex"} {
		if _, err := Create(ctx, b, p, kcp.AccountsGVR, Account("keys", "main", tenant), metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("creating the Account of %s: %w", p, err)
		}
	}
	return w, nil
}

// Account is a local-keystore Account labelled as owned by tenant.
func Account(ns, name, tenant string) *cmkv1.Account {
	return &cmkv1.Account{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmkv1.GroupVersion.String(), Kind: "Account"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{cmkv1.TenantLabel: tenant}},
		Spec:       cmkv1.AccountSpec{Keystore: cmkv1.KeystoreLocal, KeyRef: "lk-" + name, Region: "eu-central"},
	}
}

// RepoRoot finds the repository root (the directory holding go.mod) above the working directory.
func RepoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "deploy", "base", "crds")); err == nil {
				return d, nil
			}
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("repository root not found above the working directory")
		}
		d = parent
	}
}
