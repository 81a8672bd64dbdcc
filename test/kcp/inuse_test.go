package kcp_test

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	"github.com/apeirora/apeiro-cmk/pkg/admission/admissiontest"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/controllers/inuse"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpctrl"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpserver"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcptest"
)

// checkInUseOnKCP proves the in-use finalizer on kcp: the mutating webhook stamps it on Account and Tenant creates,
// a delete admitted while a dependent slips in (the race between replicas) leaves the object terminating instead of
// orphaning the dependent, a terminating Account takes no new keys, and once the dependent is gone the controller
// lifts the finalizer after the grace and the object disappears.
//
// It runs its own view, webhook and in-use controller (as the webhook's kcp mode wires them) in workspaces of its
// own, root:inuse (webhook registered) and root:inuse:kid (no webhook: the stand-in for the replica that admitted
// a dependent before it saw the delete), so the other subtests' fixture is left alone.
func checkInUseOnKCP(t *testing.T, ctx context.Context, s *kcpserver.Server, w *kcptest.World) {
	const grace = 3 * time.Second
	start := time.Now()
	parent, err := kcpserver.CreateWorkspace(ctx, s.Base, "root", "inuse", nil)
	if err != nil {
		t.Fatal(err)
	}
	kid, err := kcpserver.CreateWorkspace(ctx, s.Base, parent, "kid", nil)
	if err != nil {
		t.Fatal(err)
	}
	crds, err := kcpserver.CRDFiles(w.Root)
	if err != nil {
		t.Fatal(err)
	}
	// The kid workspace only ever holds the racing key.
	keyCRD := slices.DeleteFunc(slices.Clone(crds), func(f string) bool { return !strings.HasSuffix(f, "_serviceencryptionkeys.yaml") })
	setup := make(chan error, 2)
	for ws, files := range map[string][]string{parent: crds, kid: keyCRD} {
		go func() {
			err := kcpserver.ApplyCRDs(ctx, s.Base, ws, files...)
			if err == nil {
				err = kcpserver.EnsureNamespace(ctx, s.Base, ws, "keys")
			}
			setup <- err
		}()
	}
	for range 2 {
		if err := <-setup; err != nil {
			t.Fatal(err)
		}
	}
	step := func(what string) { t.Logf("%s (%s)", what, time.Since(start).Round(time.Millisecond)) }
	step("workspaces ready")

	model := hierarchy.New(hierarchy.Config{})
	graph := kcp.NewGraph(kcp.Options{}, model)
	// Only this subtest's workspaces: the fixture's Accounts and Tenants must not gain a finalizer that nobody
	// lifts once this controller stops (a later subtest deletes a fixture workspace).
	mine := func(lc string) bool {
		for _, p := range []string{parent, kid} {
			if ws, ok := graph.Workspace(p); ok && ws.Cluster == lc {
				return true
			}
		}
		return false
	}
	iu, err := kcpctrl.NewInUse(kcpctrl.InUseOptions{Config: s.Shard, Paths: graph, Model: model, Grace: grace,
		Recheck: 500 * time.Millisecond, Serve: mine, Log: testr.NewWithOptions(t, testr.Options{Verbosity: 1})})
	if err != nil {
		t.Fatal(err)
	}
	watcher := kcp.NewWatcher(s.Shard, graph, kcp.WatcherOptions{Log: logr.Discard(), OnAccount: iu.OnAccount})
	wctx, wcancel := context.WithCancel(ctx)
	iuDone := make(chan struct{})
	defer func() { wcancel(); <-iuDone }()
	if err := watcher.Start(wctx); err != nil {
		close(iuDone)
		t.Fatal(err)
	}
	go func() { defer close(iuDone); _ = iu.Start(wctx) }()
	if err := watcher.WaitForSync(wctx); err != nil {
		t.Fatal(err)
	}
	live, err := kcp.NewLiveReader(s.Shard, graph.Options())
	if err != nil {
		t.Fatal(err)
	}
	h := admission.NewHandlers(admission.Handlers{
		Dir:            &admission.Directory{Model: model, Source: graph, Live: admission.NewBatchedReader(live)},
		Regions:        kcp.MeshPolicy{Graph: graph},
		Permissions:    admission.RBACDelegated{},
		InUseFinalizer: inuse.Finalizer,
	})
	ts := httptest.NewUnstartedServer(admissiontest.Mux(h, admission.Limits{}))
	ts.StartTLS()
	defer ts.Close()
	if err := kcpserver.RegisterWebhooks(ctx, s.Base, w.Root, ts.URL, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), parent); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the webhook answering in "+parent, func() error {
		_, err := createTenant(ctx, s, parent, "probe", "mars-1", nil, true)
		if kcpserver.IsDenied(err, "not a Platform Mesh region") {
			return nil
		}
		return errors.New("not yet denied by the webhook: " + errString(err))
	})
	eventually(t, "the tenants inuse and inuse.kid in the view", func() error {
		if _, ok := model.Tenant("inuse.kid"); !ok {
			return errors.New("not yet")
		}
		return nil
	})
	step("webhook answering, view loaded")
	pc, err := kcpserver.Client(s.Base, parent)
	if err != nil {
		t.Fatal(err)
	}
	accounts := pc.Resource(kcp.AccountsGVR).Namespace("keys")
	tenants := pc.Resource(tenantsGVR)

	// --- an Account, and a key that got in while its delete was admitted ---
	u, err := kcpserver.Create(ctx, s.Base, parent, kcp.AccountsGVR, kcpserver.Account("keys", "a1", "inuse"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating the Account: %v", err)
	}
	if !slices.Contains(u.GetFinalizers(), inuse.Finalizer) {
		t.Fatalf("the mutating webhook did not stamp %s on the Account: finalizers %v", inuse.Finalizer, u.GetFinalizers())
	}
	eventually(t, "the Account in the view", func() error {
		if _, _, ok := graph.AccountAt(parent, "keys", "a1"); !ok {
			return errors.New("not yet")
		}
		return nil
	})
	if err := accounts.Delete(ctx, "a1", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting the unused Account: %v", err)
	}
	// The racing create: a key of the nested tenant inuse.kid using the parent's Account, stored as a replica that
	// had not seen the delete yet would have stored it (with the labels the mutating webhook stamps).
	raced := inUseKey("raced", "a1", "inuse.kid", parent)
	if _, err := kcpserver.Create(ctx, s.Base, kid, kcp.KeysGVR, raced, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the racing key: %v", err)
	}
	// A terminating Account takes no new key (A-ACCOUNT-UNUSABLE, read live).
	if _, err := kcpserver.Create(ctx, s.Base, parent, kcp.KeysGVR, inUseKey("late", "a1", "", ""), metav1.CreateOptions{}); !kcpserver.IsDenied(err, `account "keys/a1" is not found or not usable`) {
		t.Fatalf("a key on the terminating Account: %v, want A-ACCOUNT-UNUSABLE", err)
	}
	step("Account deleted while a key got in")
	time.Sleep(grace + time.Second)
	if err := terminatingWithFinalizer(ctx, accounts.Get, "a1"); err != nil {
		t.Fatalf("past the grace, with a key using it: %v", err)
	}
	kc, err := kcpserver.Client(s.Base, kid)
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.Resource(kcp.KeysGVR).Namespace("keys").Delete(ctx, "raced", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Account gone once its key is", func() error { return gone(ctx, accounts.Get, "a1") })
	step("Account: held while a key used it, gone after it")

	// --- Tenants: a delete refused while a child exists, and a child that appeared while a delete was admitted ---
	// Tenants are named by tenant ID; the Tenant inuse stands for workspace root:inuse, inuse.kid for root:inuse:kid.
	if u, err = createTenant(ctx, s, parent, "inuse", "eu-central", nil, false); err != nil {
		t.Fatalf("creating the Tenant: %v", err)
	}
	if !slices.Contains(u.GetFinalizers(), inuse.Finalizer) {
		t.Fatalf("the mutating webhook did not stamp %s on the Tenant: finalizers %v", inuse.Finalizer, u.GetFinalizers())
	}
	if err := tenants.Delete(ctx, "inuse", metav1.DeleteOptions{}); !kcpserver.IsDenied(err, "still has") {
		t.Fatalf("deleting a Tenant with a child workspace: %v, want H-DELETE-CHILDREN", err)
	}
	child := &cmkv1.Tenant{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmkv1.GroupVersion.String(), Kind: "Tenant"},
		ObjectMeta: metav1.ObjectMeta{Name: "inuse.kid"},
		Spec:       cmkv1.TenantSpec{Type: cmkv1.TenantType(hierarchy.Nested), Parent: "inuse", Region: "eu-central"},
	}
	if u, err = kcpserver.Create(ctx, s.Base, parent, tenantsGVR, child, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the Tenant inuse.kid: %v", err)
	}
	if !slices.Contains(u.GetFinalizers(), inuse.Finalizer) {
		t.Fatalf("the mutating webhook did not stamp %s on the Tenant inuse.kid: finalizers %v", inuse.Finalizer, u.GetFinalizers())
	}
	if err := tenants.Delete(ctx, "inuse.kid", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting the Tenant without children: %v", err)
	}
	// The racing child: workspaces are created without asking the webhook, so nothing stops one here.
	if _, err := kcpserver.CreateWorkspace(ctx, s.Base, kid, "grand", nil); err != nil {
		t.Fatal(err)
	}
	step("Tenant deleted while a child workspace got in")
	time.Sleep(grace + time.Second)
	if err := terminatingWithFinalizer(ctx, tenants.Get, "inuse.kid"); err != nil {
		t.Fatalf("past the grace, with a child workspace: %v", err)
	}
	if err := kc.Resource(kcp.WorkspacesGVR).Delete(ctx, "grand", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Tenant gone once its child is", func() error { return gone(ctx, tenants.Get, "inuse.kid") })
	step("Tenant: held while a child workspace existed, gone after it")
}

type getFunc func(context.Context, string, metav1.GetOptions, ...string) (*unstructured.Unstructured, error)

func terminatingWithFinalizer(ctx context.Context, get getFunc, name string) error {
	u, err := get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("%s should still exist: %w", name, err)
	}
	if u.GetDeletionTimestamp() == nil || !slices.Contains(u.GetFinalizers(), inuse.Finalizer) {
		return fmt.Errorf("%s should be terminating and keep %s: deletion %v, finalizers %v", name, inuse.Finalizer, u.GetDeletionTimestamp(), u.GetFinalizers())
	}
	return nil
}

func gone(ctx context.Context, get getFunc, name string) error {
	u, err := get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%s still exists (deletion %v, finalizers %v)", name, u.GetDeletionTimestamp(), u.GetFinalizers())
}

// inUseKey is a key on Account keys/<account>; tenant and accountWS, when set, are the labels and annotation the
// mutating webhook would stamp and the writer sets for an Account of another workspace.
func inUseKey(name, account, tenant, accountWS string) *cmkv1.ServiceEncryptionKey {
	k := &cmkv1.ServiceEncryptionKey{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmkv1.GroupVersion.String(), Kind: "ServiceEncryptionKey"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "keys", Name: name},
		Spec:       cmkv1.ServiceEncryptionKeySpec{AccountRef: cmkv1.AccountReference{Name: account}, Algorithm: cmkv1.AlgorithmAES256},
	}
	if tenant != "" {
		k.Labels = map[string]string{cmkv1.TenantLabel: tenant,
			admission.AccountRefLabel: admission.AccountRefValue(hierarchy.AccountKey{Namespace: "keys", Name: account})}
		k.Spec.AccountRef.Namespace = "keys"
	}
	if accountWS != "" {
		k.Annotations = map[string]string{kcp.AnnotationAccountWorkspace: accountWS}
	}
	return k
}
