package kcp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/apeirora/apeiro-cmk/internal/controlplane"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/controllers/inuse"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
	"github.com/apeirora/apeiro-cmk/pkg/kcp/kcpserver"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// checkWebhookBinary proves the webhook binary in kcp mode, started as production starts it: its kcp user has
// nothing but the permissions of deploy/kcp (shard-wide objects in system:admin, leader election in the platform
// workspace), plus the shard identity for the one thing kcp grants no RBAC for, the list/watch across all
// workspaces (--kcp-watch-context). It runs alone on the shard, before the package's fixture and its in-process
// webhook and controllers exist: its controllers reconcile every workspace of the shard, and two controllers with
// different embedded keystores would fight over the same Accounts. It uses workspaces of its own (bin-acme,
// bin-acme:eu, bin-globex), so every verdict and every status write seen here is the binary's, and removes its
// objects and registrations before it stops.
func checkWebhookBinary(t *testing.T, s *kcpserver.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	repo, err := kcpserver.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	bin := filepath.Join(work, "webhook")
	built := make(chan error, 1)
	go func() { built <- buildWebhook(ctx, repo, bin) }() // while kcp is provisioned
	// The binary's own tenants, provisioned meanwhile: bin-acme (Root) with its child bin-acme:eu (Nested), and
	// bin-globex (Root), each with the product CRDs and a namespace "keys".
	var acme, acmeEU, globex string
	provisioned := make(chan error, 1)
	go func() {
		var g errgroup.Group
		g.Go(func() (err error) {
			if acme, err = provisionTenant(ctx, s, repo, "root", "bin-acme"); err == nil {
				acmeEU, err = provisionTenant(ctx, s, repo, acme, "eu")
			}
			return err
		})
		g.Go(func() (err error) {
			globex, err = provisionTenant(ctx, s, repo, "root", "bin-globex")
			return err
		})
		provisioned <- g.Wait()
	}()

	// The platform workspace with the fixture's mesh configuration (the fixture reuses both).
	platform, err := kcpserver.CreateWorkspace(ctx, s.Base, "root", "platform", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := kcpserver.PutMeshConfig(ctx, s.Base, platform, "default", "platform-mesh", kcpserver.MeshConfig); err != nil {
		t.Fatal(err)
	}
	// Without deploy/kcp the webhook's user cannot even enter the platform workspace; RBAC can never give it the
	// watch.
	platformNS := "apeiro-cmk-system"
	user := s.WebhookConfig()
	if err := getLeaseAs(ctx, user, platform, platformNS); !apierrors.IsForbidden(err) {
		t.Fatalf("the webhook's user before deploy/kcp is applied: %v, want Forbidden", err)
	}
	if err := kcpserver.EnsureNamespace(ctx, s.Base, platform, platformNS); err != nil {
		t.Fatal(err)
	}
	if err := kcpserver.ApplyKustomization(ctx, s.Shard, "system:admin", filepath.Join(repo, "deploy", "kcp", "shard")); err != nil {
		t.Fatal(err)
	}
	if err := kcpserver.ApplyKustomization(ctx, s.Base, platform, filepath.Join(repo, "deploy", "kcp", "platform")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deploy/kcp in force for the webhook's user", func() error {
		if err := getLeaseAs(ctx, user, platform, platformNS); !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading the lease: %v, want NotFound (allowed, not there yet)", err)
		}
		return nil
	})
	wild, err := dynamic.NewForConfig(kcp.Wildcard(user))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wild.Resource(kcp.LogicalClustersGVR).List(ctx, metav1.ListOptions{Limit: 1}); !apierrors.IsForbidden(err) {
		t.Fatalf("a list across all workspaces as the webhook's user: %v, want Forbidden (kcp allows it only to its privileged group)", err)
	}

	if err := <-provisioned; err != nil {
		t.Fatal(err)
	}
	tenants := []string{acme, acmeEU, globex}
	t.Logf("deploy/kcp applied and the workspaces provisioned after %s", time.Since(start).Round(time.Millisecond))
	if err := <-built; err != nil {
		t.Fatal(err)
	}
	t.Logf("the binary built after %s", time.Since(start).Round(time.Millisecond))

	// Start it: the restricted user is the kubeconfig's current context, the shard identity only watches.
	kubeconfig := filepath.Join(work, "kcp.kubeconfig")
	if err := s.WriteWebhookKubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	ca, err := controlplane.NewCA("apeiro-cmk-webhook-test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.IssueServing("apeiro-cmk-webhook", []net.IP{net.ParseIP("127.0.0.1")}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(work, "certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := kp.WriteFiles(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key")); err != nil {
		t.Fatal(err)
	}
	ports, err := controlplane.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	health := fmt.Sprintf("127.0.0.1:%d", ports[2])
	logPath := filepath.Join(work, "webhook.log")
	proc, err := controlplane.StartProcess("webhook", bin, []string{
		"--kcp-kubeconfig=" + kubeconfig, "--kcp-watch-context=" + kcpserver.AdminContext,
		"--cert-dir=" + certDir, "--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", ports[0]),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[1]), "--health-probe-bind-address=" + health,
		"--leader-elect", "--leader-election-namespace=" + platformNS,
		"--keystore-plugins=local=LOCAL", "--account-probe-interval=2s", "--in-use-grace=1s",
		// kcp's admin user writes the test's objects; it carries no tenant-admin group.
		"--tenant-admin-group-prefix=",
	}, logPath, "APEIRO_LOCAL_KEYSTORE_DIR="+filepath.Join(work, "keystore-local"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = proc.Stop(10 * time.Second) }()
	hc := &http.Client{Timeout: 2 * time.Second}
	if err := controlplane.WaitReady(ctx, time.Minute, proc, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+health+"/readyz", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New("/readyz: " + resp.Status)
		}
		return nil
	}); err != nil {
		t.Fatalf("the webhook binary did not become ready: %v\n%s", err, proc.LogTail(40))
	}
	t.Logf("the binary ready after %s", time.Since(start).Round(time.Millisecond))
	url := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	defer teardownBinary(t, s, proc, logPath, start, tenants)
	if err := kcpserver.RegisterWebhooks(ctx, s.Base, repo, url, ca.CertPEM, tenants...); err != nil {
		t.Fatal(err)
	}
	for _, ws := range tenants {
		eventually(t, "the binary answering in "+ws, func() error {
			_, err := createTenant(ctx, s, ws, "probe", "mars-1", nil, true)
			if kcpserver.IsDenied(err, "not a Platform Mesh region") {
				return nil
			}
			return errors.New("not yet denied by the binary: " + errString(err))
		})
	}

	t.Run("valid-tenant-and-accounts-admitted", func(t *testing.T) {
		if _, err := createTenant(ctx, s, acme, "bin-valid", "eu-central", []string{"cmk"}, false); err != nil {
			t.Fatalf("a valid Tenant: %v", err)
		}
		for ws, tenant := range map[string]string{acme: "bin-acme", globex: "bin-globex"} {
			if _, err := kcpserver.Create(ctx, s.Base, ws, kcp.AccountsGVR, kcpserver.Account("keys", "main", tenant), metav1.CreateOptions{}); err != nil {
				t.Fatalf("a valid Account in %s: %v", ws, err)
			}
		}
	})
	t.Run("mesh-violation-denied", func(t *testing.T) {
		_, err := createTenant(ctx, s, acme, "bin-mars", "mars-1", nil, false)
		if !kcpserver.IsDenied(err, `region "mars-1" is not a Platform Mesh region (allowed: eu-central, us-east)`) {
			t.Fatalf("a Tenant outside the mesh's regions: %v", err)
		}
	})
	t.Run("cross-tenant-key-denied", func(t *testing.T) {
		_, err := createKey(ctx, s, globex, "k-cross", acme)
		if !kcpserver.IsDenied(err, `not usable by tenant "bin-globex"`) {
			t.Fatalf("a bin-globex key using bin-acme's Account: %v", err)
		}
		if _, err := createKey(ctx, s, acmeEU, "k-valid", acme); err != nil {
			t.Fatalf("a bin-acme.eu key using its parent's Account: %v", err)
		}
	})
	t.Run("dry-run-no-side-effects", func(t *testing.T) {
		dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
		// The webhook judges dry runs like real writes...
		if _, err := kcpserver.Create(ctx, s.Base, globex, kcp.KeysGVR, keyObj("k-dry-cross", acme), dry); !kcpserver.IsDenied(err, `not usable by tenant "bin-globex"`) {
			t.Fatalf("a dry-run cross-tenant key: %v, want the same denial", err)
		}
		if _, err := kcpserver.Create(ctx, s.Base, acme, kcp.AccountsGVR, kcpserver.Account("keys", "dry", "bin-acme"), dry); err != nil {
			t.Fatalf("a dry-run Account: %v", err)
		}
		if _, err := kcpserver.Create(ctx, s.Base, acmeEU, kcp.KeysGVR, keyObj("k-dry", acme), dry); err != nil {
			t.Fatalf("a dry-run key: %v", err)
		}
		// ...and nothing of them is stored, probed, wrapped or reported. The real key of the same shape gets its
		// wrapped material from the binary's controllers (as its restricted user), so by then the dry-run one would
		// have had its own.
		waitWrapped(t, ctx, s, acmeEU, "k-valid")
		for _, o := range []struct{ ws, resource, name string }{
			{acme, "accounts", "dry"}, {acmeEU, "serviceencryptionkeys", "k-dry"},
		} {
			if err := getTyped(ctx, s, o.ws, o.resource, "keys", o.name, &struct{}{}); !apierrors.IsNotFound(err) {
				t.Errorf("%s %s/keys/%s after a dry run: %v, want NotFound", o.resource, o.ws, o.name, err)
			}
		}
		dc, err := kcpserver.Client(s.Base, acmeEU)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dc.Resource(secretsGVR).Namespace("keys").Get(ctx, keychain.SecretName("k-dry"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the wrapped-key Secret of the dry-run key: %v, want NotFound", err)
		}
		for _, ws := range []string{acme, acmeEU} {
			dc, err := kcpserver.Client(s.Base, ws)
			if err != nil {
				t.Fatal(err)
			}
			l, err := dc.Resource(eventsGVR).Namespace("keys").List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range l.Items {
				if n, _, _ := unstructured.NestedString(e.Object, "involvedObject", "name"); n == "dry" || n == "k-dry" {
					t.Errorf("an Event about a dry-run object in %s: %s", ws, e.GetName())
				}
			}
		}
	})
	t.Run("delete-through-controller", func(t *testing.T) {
		// The key's finalizer is removed, and its Secret deleted, by the binary as its restricted user.
		dc, err := kcpserver.Client(s.Base, acmeEU)
		if err != nil {
			t.Fatal(err)
		}
		if err := dc.Resource(kcp.KeysGVR).Namespace("keys").Delete(ctx, "k-valid", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the key and its Secret gone", func() error {
			if _, err := dc.Resource(kcp.KeysGVR).Namespace("keys").Get(ctx, "k-valid", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("key: %v", errString(err))
			}
			if _, err := dc.Resource(secretsGVR).Namespace("keys").Get(ctx, keychain.SecretName("k-valid"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("secret: %v", errString(err))
			}
			return nil
		})
	})
	t.Run("in-use-release", func(t *testing.T) {
		// The in-use finalizer the mutating webhook stamped is removed by the binary's in-use controller (a patch as
		// its restricted user) once nothing depends on the object; this also leaves no objects behind.
		for _, o := range []struct {
			ws       string
			gvr      schema.GroupVersionResource
			ns, name string
		}{
			{acme, tenantsGVR, "", "bin-valid"},
			{acme, kcp.AccountsGVR, "keys", "main"},
			{globex, kcp.AccountsGVR, "keys", "main"},
		} {
			dc, err := kcpserver.Client(s.Base, o.ws)
			if err != nil {
				t.Fatal(err)
			}
			ri := dc.Resource(o.gvr).Namespace(o.ns)
			u, err := ri.Get(ctx, o.name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(u.GetFinalizers(), inuse.Finalizer) {
				t.Errorf("%s %s/%s has finalizers %v, want the in-use finalizer", o.gvr.Resource, o.ws, o.name, u.GetFinalizers())
			}
			if err := ri.Delete(ctx, o.name, metav1.DeleteOptions{}); err != nil {
				t.Fatalf("deleting %s %s/%s: %v", o.gvr.Resource, o.ws, o.name, err)
			}
			eventually(t, o.gvr.Resource+" "+o.ws+"/"+o.name+" gone", func() error {
				u, err := ri.Get(ctx, o.name, metav1.GetOptions{})
				switch {
				case apierrors.IsNotFound(err):
					return nil
				case err != nil:
					return err
				}
				return fmt.Errorf("still there, finalizers %v", u.GetFinalizers())
			})
		}
	})
	t.Run("no-forbidden-in-log", func(t *testing.T) {
		// Everything above went through the binary; a permission deploy/kcp lacks shows up as a "forbidden"
		// answer from kcp in its log (a failed status write, event, Secret or lease) or as a readiness that never
		// came.
		b, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		if m := regexp.MustCompile(`(?i).*(forbidden|unauthorized).*`).FindAll(b, 5); len(m) > 0 {
			t.Fatalf("the binary's log reports missing permissions:\n%s", bytesLines(m))
		}
		if !strings.Contains(strings.ToLower(string(b)), "successfully acquired lease") {
			t.Errorf("the binary never acquired its lease in %s/%s (leader election through deploy/kcp/platform)", platform, platformNS)
		}
	})
}

// teardownBinary leaves nothing for the package's later subtests, also after a failure: first the registrations (so
// no write in these workspaces waits for a stopped webhook), then the binary, then the workspaces (kcp deletes their
// content; objects that still hold a finalizer of the stopped binary only keep their own workspace).
func teardownBinary(t *testing.T, s *kcpserver.Server, proc *controlplane.Process, logPath string, start time.Time, tenants []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ws := range tenants {
		dc, err := kcpserver.Client(s.Base, ws)
		if err != nil {
			t.Error(err)
			continue
		}
		for _, gvr := range []schema.GroupVersionResource{
			admissionregistrationv1.SchemeGroupVersion.WithResource("validatingwebhookconfigurations"),
			admissionregistrationv1.SchemeGroupVersion.WithResource("mutatingwebhookconfigurations"),
		} {
			if err := dc.Resource(gvr).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
				t.Errorf("removing the binary's %s from %s: %v", gvr.Resource, ws, err)
			}
		}
	}
	if err := proc.Stop(10 * time.Second); err != nil {
		t.Logf("stopping the binary: %v", err)
	}
	t.Logf("binary subtest done after %s", time.Since(start).Round(time.Millisecond))
	if t.Failed() {
		t.Logf("the binary's log:\n%s", controlplane.TailFile(logPath, 60))
	}
	root, err := kcpserver.Client(s.Base, "root")
	if err != nil {
		t.Error(err)
		return
	}
	for _, name := range []string{"bin-acme", "bin-globex"} {
		if err := root.Resource(kcp.WorkspacesGVR).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Logf("deleting workspace %s: %v", name, err)
		}
	}
}

// buildWebhook builds ./cmd/webhook from the repository at root into out.
func buildWebhook(ctx context.Context, root, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/webhook")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/webhook: %w\n%s", err, b)
	}
	return nil
}

// provisionTenant creates the workspace parent:name with the product CRDs and a namespace "keys".
func provisionTenant(ctx context.Context, s *kcpserver.Server, root, parent, name string) (string, error) {
	p, err := kcpserver.CreateWorkspace(ctx, s.Base, parent, name, nil)
	if err != nil {
		return "", err
	}
	crds, err := kcpserver.CRDFiles(root)
	if err != nil {
		return "", err
	}
	if err := kcpserver.ApplyCRDs(ctx, s.Base, p, crds...); err != nil {
		return "", err
	}
	return p, kcpserver.EnsureNamespace(ctx, s.Base, p, "keys")
}

// getLeaseAs reads the webhook's leader election lease in the platform workspace as cfg's user.
func getLeaseAs(ctx context.Context, cfg *rest.Config, platform, ns string) error {
	dc, err := dynamic.NewForConfig(kcp.ForCluster(cfg, platform))
	if err != nil {
		return err
	}
	gvr := schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}
	_, err = dc.Resource(gvr).Namespace(ns).Get(ctx, "apeiro-cmk-account-status", metav1.GetOptions{})
	return err
}

func keyObj(name, accountWS string) *cmkv1.ServiceEncryptionKey {
	return &cmkv1.ServiceEncryptionKey{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmkv1.GroupVersion.String(), Kind: "ServiceEncryptionKey"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "keys", Name: name, Annotations: map[string]string{kcp.AnnotationAccountWorkspace: accountWS}},
		Spec:       cmkv1.ServiceEncryptionKeySpec{AccountRef: cmkv1.AccountReference{Name: "main"}, Algorithm: cmkv1.AlgorithmAES256},
	}
}

// waitWrapped waits until the key ws/keys/name is Ready with its wrapped material stored.
func waitWrapped(t *testing.T, ctx context.Context, s *kcpserver.Server, ws, name string) {
	t.Helper()
	eventually(t, "key "+ws+"/keys/"+name+" wrapped and Ready", func() error {
		key, err := getKey(ctx, s, ws, "keys", name)
		if err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(key.Status.Conditions, cmkv1.ConditionReady) || key.Status.KeyID == "" {
			return fmt.Errorf("status %+v", key.Status)
		}
		dc, err := kcpserver.Client(s.Base, ws)
		if err != nil {
			return err
		}
		_, err = dc.Resource(secretsGVR).Namespace("keys").Get(ctx, keychain.SecretName(name), metav1.GetOptions{})
		return err
	})
}

func bytesLines(m [][]byte) string {
	var b strings.Builder
	for _, l := range m {
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.String()
}
