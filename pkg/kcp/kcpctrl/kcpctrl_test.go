package kcpctrl

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
	"github.com/apeirora/apeiro-cmk/pkg/kcp"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

type fakeGraph struct {
	users map[string][]kcp.ObjectRef
}

func (g fakeGraph) KeysUsing(cluster, ns, name string) []kcp.ObjectRef {
	return g.users[cluster+"/"+ns+"/"+name]
}

func (g fakeGraph) KeyAccountCluster(string, string, string) (string, bool, string, string, bool) {
	return "", false, "", "", false
}

func newTest(t *testing.T, g Graph, m *hierarchy.Model) *Controllers {
	t.Helper()
	c, err := New(Options{Config: &rest.Config{Host: "https://kcp.invalid"}, Graph: g, Model: m, Chain: keychain.NewChain(kcp.NoClusterReader{})})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The fixed mapping must name the real resources: a guessed plural of ServiceEncryptionKey ("...keies") made every
// key read a silent NotFound.
func TestMapping(t *testing.T) {
	c := newTest(t, fakeGraph{}, nil)
	for kind, want := range map[string]string{"Account": "accounts", "ServiceEncryptionKey": "serviceencryptionkeys", "Tenant": "tenants"} {
		m, err := c.mapper.RESTMapping(cmkv1.GroupVersion.WithKind(kind).GroupKind(), cmkv1.GroupVersion.Version)
		if err != nil || m.Resource.Resource != want {
			t.Errorf("%s maps to %v (%v), want %s", kind, m, err, want)
		}
	}
	for _, kind := range []string{"Secret", "Event"} {
		if _, err := c.mapper.RESTMapping(cmkv1.GroupVersion.WithKind(kind).GroupKind()); err == nil {
			t.Errorf("%s must not map in our group", kind)
		}
	}
}

func TestEnqueue(t *testing.T) {
	g := fakeGraph{users: map[string][]kcp.ObjectRef{"lc1/keys/main": {{Cluster: "lc2", Namespace: "keys", Name: "k"}}}}
	for _, tc := range []struct {
		name string
		feed func(c *Controllers)
		want []item
	}{
		{"account create probes and requeues its keys", func(c *Controllers) {
			c.OnAccount(kcp.ObjectEvent{Cluster: "lc1", Namespace: "keys", Name: "main", GenerationChanged: true})
		}, []item{{kindAccount, "lc1", "keys", "main"}, {kindKey, "lc2", "keys", "k"}}},
		{"account status write requeues keys only", func(c *Controllers) {
			c.OnAccount(kcp.ObjectEvent{Cluster: "lc1", Namespace: "keys", Name: "main"})
		}, []item{{kindKey, "lc2", "keys", "k"}}},
		{"account without a cluster is ignored", func(c *Controllers) {
			c.OnAccount(kcp.ObjectEvent{Namespace: "keys", Name: "main", GenerationChanged: true})
		}, nil},
		{"key delete needs no work", func(c *Controllers) {
			c.OnKey(kcp.ObjectEvent{Cluster: "lc2", Namespace: "keys", Name: "k", Deleted: true})
		}, nil},
		{"key events are deduplicated", func(c *Controllers) {
			c.OnKey(kcp.ObjectEvent{Cluster: "lc2", Namespace: "keys", Name: "k"})
			c.OnKey(kcp.ObjectEvent{Cluster: "lc2", Namespace: "keys", Name: "k", GenerationChanged: true})
		}, []item{{kindKey, "lc2", "keys", "k"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTest(t, g, nil)
			tc.feed(c)
			var got []item
			for c.queue.Len() > 0 {
				it, _ := c.queue.Get()
				c.queue.Done(it)
				got = append(got, it)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("queued %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("queued %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// A key may read an Account of another workspace only while the hierarchy allows its tenant to use that tenant.
func TestRoutedAccountReads(t *testing.T) {
	m := hierarchy.New(hierarchy.Config{})
	m.UpsertTenant(hierarchy.Tenant{ID: "acme", Type: hierarchy.Root})
	m.UpsertTenant(hierarchy.Tenant{ID: "acme.eu", Type: hierarchy.Nested, Parent: "acme"})
	m.UpsertTenant(hierarchy.Tenant{ID: "globex", Type: hierarchy.Root})
	c := newTest(t, fakeGraph{}, m)
	acct := &cmkv1.Account{}
	acct.Namespace, acct.Name = "keys", "main"
	accounts := fake.NewClientBuilder().WithScheme(c.scheme).WithObjects(acct).Build()
	own := fake.NewClientBuilder().WithScheme(c.scheme).Build()
	for _, tc := range []struct {
		keyTenant, acctTenant string
		deny                  string
	}{
		{"acme.eu", "acme", ""},
		{"acme", "acme.eu", "acme"},
		{"globex", "acme", "globex"},
		{"", "acme", "belongs to no tenant"},
	} {
		r := &routed{Client: own, accounts: accounts, allowed: c.mayUse(tc.keyTenant, tc.acctTenant)}
		var got cmkv1.Account
		err := r.Get(context.Background(), client.ObjectKey{Namespace: "keys", Name: "main"}, &got)
		switch {
		case tc.deny == "" && (err != nil || got.Name != "main"):
			t.Errorf("%s using %s: %v", tc.keyTenant, tc.acctTenant, err)
		case tc.deny != "" && (err == nil || !strings.Contains(err.Error(), tc.deny)):
			t.Errorf("%s using %s: %v, want a refusal mentioning %q", tc.keyTenant, tc.acctTenant, err, tc.deny)
		}
	}
	// A workspace that does not exist holds no Account, whatever the key's own workspace has of that name.
	r := &routed{Client: accounts}
	if err := r.Get(context.Background(), client.ObjectKey{Namespace: "keys", Name: "main"}, &cmkv1.Account{}); !apierrors.IsNotFound(err) {
		t.Errorf("Account of a missing workspace: %v, want NotFound", err)
	}
}
