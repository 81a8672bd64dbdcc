package identity

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/keychain"
	"github.com/apeirora/apeiro-cmk/pkg/keychain/localwrap"
)

// chainWorld is a key chain as cmd/webhook wires it for the workload key endpoint (keychain.Chain with the local
// keystore's Wrapper, KubeKeyLookup as the key lookup), over an in-memory API holding two tenants' Accounts, keys
// and the keys' wrapped material. material holds the plaintext each key was wrapped from.
type chainWorld struct {
	chain    *keychain.Chain
	lookup   KubeKeyLookup
	material map[string][]byte // "<namespace>/<name>" → key material
}

// newChainWorld creates, per tenant, a namespace labelled with the tenant, an Account on the local keystore with
// its L1 key, and a Ready AES256 key "db-key" listing the given SPIFFE IDs, wrapped by the chain itself (the same
// Secret layout the key controller writes).
func newChainWorld(t testing.TB, listed map[string][]string) *chainWorld {
	t.Helper()
	ctx := context.Background()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := cmkv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	w, err := localwrap.New(ctx, "dir: "+t.TempDir()+"\n")
	if err != nil {
		t.Fatal(err)
	}
	var objs []client.Object
	type entry struct {
		acct *cmkv1.Account
		key  *cmkv1.ServiceEncryptionKey
	}
	var entries []entry
	for tenant, ids := range listed {
		ns := tenant + "-ns"
		labels := map[string]string{cmkv1.TenantLabel: tenant}
		acct := &cmkv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "main", Labels: labels, UID: types.UID(tenant + "-acct-uid")},
			Spec: cmkv1.AccountSpec{Keystore: cmkv1.KeystoreLocal, KeyRef: tenant + "-l1", Region: "eu-central"}}
		key := &cmkv1.ServiceEncryptionKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-key", Labels: labels, UID: types.UID(tenant + "-key-uid")},
			Spec: cmkv1.ServiceEncryptionKeySpec{AccountRef: cmkv1.AccountReference{Name: "main"}, Algorithm: cmkv1.AlgorithmAES256, WorkloadIdentities: ids}}
		key.Status.KeyID = tenant + "-key-1"
		meta.SetStatusCondition(&key.Status.Conditions, metav1.Condition{Type: cmkv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Wrapped", LastTransitionTime: metav1.Now()})
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, acct, key)
		entries = append(entries, entry{acct, key})
	}
	cw := &chainWorld{material: map[string][]byte{}}
	// Wrapping needs only the Account object; the Reader is set once the Secrets exist.
	cw.chain = keychain.NewChain(nil)
	cw.chain.Register(cmkv1.KeystoreLocal, w)
	cw.chain.SetProvisioning(cmkv1.KeystoreLocal, true)
	for _, e := range entries {
		if _, err := cw.chain.EnsureL1Key(ctx, e.acct); err != nil {
			t.Fatal(err)
		}
		m := make([]byte, 32)
		_, _ = rand.Read(m)
		wr, err := cw.chain.WrapWithAccount(ctx, e.acct, m, keychain.ServiceKeyAAD(e.key))
		if err != nil {
			t.Fatal(err)
		}
		cw.material[e.key.Namespace+"/"+e.key.Name] = m
		objs = append(objs, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: e.key.Namespace, Name: keychain.SecretName(e.key.Name),
				Annotations:     map[string]string{keychain.AnnotationKeyID: e.key.Status.KeyID},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: cmkv1.GroupVersion.String(), Kind: "ServiceEncryptionKey", Name: e.key.Name, UID: e.key.UID}}},
			Type: keychain.SecretType,
			Data: map[string][]byte{keychain.SecretKeyWrapped: wr.Ciphertext, keychain.SecretKeyVersion: []byte(wr.KeyVersion)},
		})
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
	cw.chain.Reader = c
	cw.lookup = KubeKeyLookup{Reader: c}
	return cw
}

// testWorkloadKeysWithKeychain runs the workload key endpoint with the real key chain and SPIRE's SVIDs: the key
// released to a listed workload is the material the chain wrapped, encrypt/decrypt go through the chain, and a
// workload of acme never obtains globex's key, even when globex lists it.
func testWorkloadKeysWithKeychain(t *testing.T, v *SPIFFEVerifier, svid *x509svid.SVID, jwtSVID string) {
	id := svid.ID.String()
	cw := newChainWorld(t, map[string][]string{
		"acme": {id},
		// globex lists acme's workload (by mistake or on purpose): still not acme's to use.
		"globex": {id, "spiffe://" + spireTD + "/tenant/globex/ns/billing/sa/api"},
	})
	var mu sync.Mutex
	var logs strings.Builder
	srv := httptest.NewUnstartedServer(&WorkloadKeyHandler{SPIFFE: v, Keys: cw.lookup, Service: cw.chain, Log: slogTo(&logs, &mu)})
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	chain := make([][]byte, 0, len(svid.Certificates))
	for _, c := range svid.Certificates {
		chain = append(chain, c.Raw)
	}
	mtls := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: chain, PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}}}}}
	plain := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	call := func(c *http.Client, path, bearer string, in any) (int, map[string]string) {
		t.Helper()
		var body io.Reader
		if in != nil {
			b, _ := json.Marshal(in)
			body = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(http.MethodPost, srv.URL+WorkloadKeyPath+path, body)
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out := map[string]string{}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}

	code, out := call(mtls, "acme-ns/db-key/unwrap", "", nil)
	if code != http.StatusOK {
		t.Fatalf("unwrap over mTLS with the real chain: HTTP %d %v", code, out)
	}
	got, err := base64.StdEncoding.DecodeString(out["key"])
	if err != nil || !bytes.Equal(got, cw.material["acme-ns/db-key"]) {
		t.Fatalf("released key is not the material the chain wrapped (%d bytes, %v)", len(got), err)
	}
	if code, out = call(plain, "acme-ns/db-key/unwrap", jwtSVID, nil); code != http.StatusOK || out["key"] != base64.StdEncoding.EncodeToString(cw.material["acme-ns/db-key"]) {
		t.Fatalf("unwrap with the JWT-SVID: HTTP %d", code)
	}

	// encrypt through the endpoint, decrypt with the chain directly (and back): both sides use the same key.
	msg, aad := []byte("card 4111 1111 1111 1111"), []byte("order-7")
	code, out = call(mtls, "acme-ns/db-key/encrypt", "", map[string][]byte{"plaintext": msg, "aad": aad})
	if code != http.StatusOK {
		t.Fatalf("encrypt: HTTP %d %v", code, out)
	}
	ct, _ := base64.StdEncoding.DecodeString(out["ciphertext"])
	if pt, err := cw.chain.Decrypt(context.Background(), "acme-ns", "db-key", ct, aad); err != nil || !bytes.Equal(pt, msg) {
		t.Fatalf("the chain cannot decrypt what the endpoint encrypted: %v", err)
	}
	ct2, err := cw.chain.Encrypt(context.Background(), "acme-ns", "db-key", msg, aad)
	if err != nil {
		t.Fatal(err)
	}
	if code, out = call(mtls, "acme-ns/db-key/decrypt", "", map[string][]byte{"ciphertext": ct2, "aad": aad}); code != http.StatusOK || out["plaintext"] != base64.StdEncoding.EncodeToString(msg) {
		t.Fatalf("decrypt of the chain's ciphertext: HTTP %d", code)
	}

	// Tenant isolation: globex's key lists acme's workload, yet acme's workload gets the same 403 as for a key it
	// is not listed in, for every operation and both credentials.
	for _, op := range []string{"unwrap", "encrypt", "decrypt"} {
		in := map[string][]byte{"plaintext": msg, "ciphertext": ct2}
		if code, out := call(mtls, "globex-ns/db-key/"+op, "", in); code != http.StatusForbidden || out["key"] != "" {
			t.Fatalf("acme workload, globex key, %s over mTLS: HTTP %d", op, code)
		}
		if code, _ := call(plain, "globex-ns/db-key/"+op, jwtSVID, in); code != http.StatusForbidden {
			t.Fatalf("acme workload, globex key, %s with the JWT-SVID: HTTP %d", op, code)
		}
	}
	if code, _ := call(mtls, "acme-ns/missing/unwrap", "", nil); code != http.StatusForbidden {
		t.Fatalf("missing key: HTTP %d, want the same 403", code)
	}

	mu.Lock()
	defer mu.Unlock()
	for name, m := range cw.material {
		for _, enc := range []string{base64.StdEncoding.EncodeToString(m), string(m)} {
			if strings.Contains(logs.String(), enc) {
				t.Fatalf("key material of %s in the access log", name)
			}
		}
	}
	if !strings.Contains(logs.String(), id) || !strings.Contains(logs.String(), "globex-ns") {
		t.Fatalf("access log lacks the SPIFFE ID or the refused key:\n%s", logs.String())
	}
}
