// Package admissiontest builds the fixtures the admission tests, fuzz targets and benchmarks share: a small tenant
// world (hierarchy model plus a fake API server holding the same objects), AdmissionReview bodies, and a checker for
// the AdmissionReview conformance rules the API server enforces.
//
// World (every tenant owns a namespace of the same name, labelled cmk.apeiro.io/tenant, with an Account "main"):
//
//	acme (Root)
//	├── acme-eu (Nested)
//	│   ├── acme-eu-payments (Nested)
//	│   └── acme-eu-dr (Shadow of acme-eu)
//	└── acme-us (Nested)
//	globex (Root)
//
// ServiceEncryptionKey acme-eu/k1 uses Account acme-eu/main; the other Accounts have no keys. Namespace
// "unassigned" has no tenant label.
package admissiontest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/apeirora/apeiro-cmk/pkg/admission"
	cmkv1 "github.com/apeirora/apeiro-cmk/pkg/apis/cmk/v1alpha1"
	"github.com/apeirora/apeiro-cmk/pkg/hierarchy"
)

// Tenant IDs of the world.
const (
	Acme         = "acme"
	AcmeEU       = "acme-eu"
	AcmePayments = "acme-eu-payments"
	AcmeEUDR     = "acme-eu-dr"
	AcmeUS       = "acme-us"
	Globex       = "globex"
	// Unassigned is a namespace without a tenant label.
	Unassigned = "unassigned"
	// Region is the region every object of the world uses.
	Region = "eu-de"
)

// Tenants of the world in creation order (parents first).
var Tenants = []hierarchy.Tenant{
	{ID: Acme, Type: hierarchy.Root},
	{ID: AcmeEU, Type: hierarchy.Nested, Parent: Acme},
	{ID: AcmePayments, Type: hierarchy.Nested, Parent: AcmeEU},
	{ID: AcmeEUDR, Type: hierarchy.Shadow, ShadowOf: AcmeEU},
	{ID: AcmeUS, Type: hierarchy.Nested, Parent: Acme},
	{ID: Globex, Type: hierarchy.Root},
}

// Scheme has the core and cmk.apeiro.io/v1alpha1 types.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := cmkv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// World is a tenant world held twice, as the webhook sees it: in the hierarchy model (informer view) and in a fake
// API server (live reads and the namespace cache).
type World struct {
	Model  *hierarchy.Model
	Client client.WithWatch
	Dir    *admission.Directory
}

// NewWorld builds the world described in the package comment.
func NewWorld() *World {
	m := hierarchy.New(hierarchy.Config{})
	var objs []client.Object
	for _, t := range Tenants {
		m.UpsertTenant(t)
		objs = append(objs, TenantObject(t), NamespaceObject(t.ID, t.ID))
		acct := AccountKeyOf(t.ID)
		m.UpsertAccount(acct, t.ID)
		objs = append(objs, AccountObject(t.ID, "main", t.ID))
	}
	objs = append(objs, NamespaceObject(Unassigned, ""))
	m.UpsertKey(hierarchy.KeyRef{Namespace: AcmeEU, Name: "k1"}, AccountKeyOf(AcmeEU))
	c := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(objs...).Build()
	return &World{
		Model:  m,
		Client: c,
		Dir:    &admission.Directory{Model: m, Cached: c, Live: c, MaxDepth: hierarchy.DefaultMaxDepth},
	}
}

// AccountKeyOf is the key of tenant's Account "main".
func AccountKeyOf(tenant string) hierarchy.AccountKey {
	return hierarchy.AccountKey{Namespace: tenant, Name: "main"}
}

// Handlers returns handlers over the world with h's policies (defaults filled in by admission.NewHandlers).
func (w *World) Handlers(h admission.Handlers) *admission.Handlers {
	h.Dir = w.Dir
	return admission.NewHandlers(h)
}

// MuxRegistrar adapts an http.ServeMux to admission.Registrar.
type MuxRegistrar struct{ *http.ServeMux }

// Register implements admission.Registrar.
func (m MuxRegistrar) Register(path string, hook http.Handler) { m.Handle(path, hook) }

// Mux registers every endpoint of h on a fresh ServeMux through admission.Register.
func Mux(h *admission.Handlers, lim admission.Limits) *http.ServeMux {
	mux := http.NewServeMux()
	admission.Register(MuxRegistrar{mux}, h, lim)
	return mux
}

// AddLive creates obj in the fake API server only (the informers have not seen it yet).
func (w *World) AddLive(t testing.TB, obj client.Object) {
	t.Helper()
	if err := w.Client.Create(context.Background(), obj); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating %T %s live: %v", obj, obj.GetName(), err)
	}
}

// Release removes tenant's namespace and Account "main" from the fake API server, as an operator does before
// deleting a tenant (A-TENANT-IN-USE).
func (w *World) Release(t testing.TB, tenant string) {
	t.Helper()
	for _, obj := range []client.Object{AccountObject(tenant, "main", tenant), NamespaceObject(tenant, tenant)} {
		if err := w.Client.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("releasing tenant %s: %v", tenant, err)
		}
	}
}

// TenantObject is the API object of t with the labels the mutating webhook stamps.
func TenantObject(t hierarchy.Tenant) *cmkv1.Tenant {
	labels := map[string]string{cmkv1.TenantLabel: t.ID}
	if t.Parent != "" {
		labels[admission.ParentLabel] = t.Parent
	}
	if t.ShadowOf != "" {
		labels[admission.ShadowOfLabel] = t.ShadowOf
	}
	return &cmkv1.Tenant{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmkv1.GroupVersion.String(), Kind: "Tenant"},
		ObjectMeta: metav1.ObjectMeta{Name: t.ID, Labels: labels},
		Spec:       cmkv1.TenantSpec{Type: cmkv1.TenantType(t.Type), Parent: t.Parent, ShadowOf: t.ShadowOf, Region: Region},
	}
}

// NamespaceObject is a namespace owned by tenant ("" = unassigned).
func NamespaceObject(name, tenant string) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if tenant != "" {
		ns.Labels = map[string]string{cmkv1.TenantLabel: tenant}
	}
	return ns
}

// AccountObject is a local-keystore Account in namespace ns with ownership label owner ("" = none).
func AccountObject(ns, name, owner string) *cmkv1.Account {
	a := &cmkv1.Account{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmkv1.GroupVersion.String(), Kind: "Account"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       cmkv1.AccountSpec{Keystore: cmkv1.KeystoreLocal, KeyRef: "lk-" + ns + "-" + name, Region: Region},
	}
	if owner != "" {
		a.Labels = map[string]string{cmkv1.TenantLabel: owner}
	}
	return a
}

// KeyObject is a ServiceEncryptionKey in ns using Account accountNS/account, labelled as owned by ns's tenant.
func KeyObject(ns, name, accountNS, account string) *cmkv1.ServiceEncryptionKey {
	refNS := accountNS
	if refNS == "" {
		refNS = ns
	}
	labels := map[string]string{
		cmkv1.TenantLabel:         ns,
		admission.AccountRefLabel: admission.AccountRefValue(hierarchy.AccountKey{Namespace: refNS, Name: account}),
	}
	return &cmkv1.ServiceEncryptionKey{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmkv1.GroupVersion.String(), Kind: "ServiceEncryptionKey"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: cmkv1.ServiceEncryptionKeySpec{
			AccountRef: cmkv1.AccountReference{Name: account, Namespace: accountNS},
			Algorithm:  cmkv1.AlgorithmAES256,
		},
	}
}

// NotificationObject is a WebHookNotification in ns labelled as owned by ns's tenant.
func NotificationObject(ns, name, url string, signed bool) *cmkv1.WebHookNotification {
	w := &cmkv1.WebHookNotification{
		TypeMeta:   metav1.TypeMeta{APIVersion: cmkv1.GroupVersion.String(), Kind: "WebHookNotification"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{cmkv1.TenantLabel: ns}},
		Spec:       cmkv1.WebHookNotificationSpec{URL: url, EventTypes: []cmkv1.EventType{"KeyRotated"}, Format: cmkv1.FormatJSON},
	}
	if signed {
		w.Spec.SigningSecretRef = &cmkv1.SecretKeySelector{Name: "hook-secret", Key: "key"}
	}
	return w
}

// Req describes one AdmissionRequest. Object and OldObject are marshalled with encoding/json unless they are
// already []byte (raw JSON, sent as is).
type Req struct {
	UID       string
	Group     string // default cmk.apeiro.io
	Kind      string
	Op        admissionv1.Operation // default CREATE
	Namespace string
	Name      string
	Object    any
	OldObject any
	DryRun    bool
	User      authenticationv1.UserInfo
}

// DefaultUser is the caller of requests that do not set one.
var DefaultUser = authenticationv1.UserInfo{Username: "alice", Groups: []string{"system:authenticated"}}

// Request builds the AdmissionRequest of r.
func (r Req) Request() admissionv1.AdmissionRequest {
	group := r.Group
	if group == "" {
		group = cmkv1.GroupVersion.Group
	}
	op := r.Op
	if op == "" {
		op = admissionv1.Create
	}
	uid := r.UID
	if uid == "" {
		uid = "uid-" + strings.ToLower(r.Kind) + "-" + r.Name
	}
	user := r.User
	if user.Username == "" {
		user = DefaultUser
	}
	resource := strings.ToLower(r.Kind) + "s"
	gvk := metav1.GroupVersionKind{Group: group, Version: "v1alpha1", Kind: r.Kind}
	gvr := metav1.GroupVersionResource{Group: group, Version: "v1alpha1", Resource: resource}
	dry := r.DryRun
	return admissionv1.AdmissionRequest{
		UID:             types.UID(uid),
		Kind:            gvk,
		Resource:        gvr,
		RequestKind:     &gvk,
		RequestResource: &gvr,
		Name:            r.Name,
		Namespace:       r.Namespace,
		Operation:       op,
		UserInfo:        user,
		Object:          raw(r.Object),
		OldObject:       raw(r.OldObject),
		DryRun:          &dry,
		Options:         runtime.RawExtension{Raw: []byte(`{"apiVersion":"meta.k8s.io/v1","kind":"` + optionsKind(op) + `"}`)},
	}
}

func optionsKind(op admissionv1.Operation) string {
	switch op {
	case admissionv1.Update:
		return "UpdateOptions"
	case admissionv1.Delete:
		return "DeleteOptions"
	}
	return "CreateOptions"
}

func raw(obj any) runtime.RawExtension {
	switch o := obj.(type) {
	case nil:
		return runtime.RawExtension{}
	case []byte:
		return runtime.RawExtension{Raw: o}
	default:
		b, err := json.Marshal(o)
		if err != nil {
			panic(fmt.Sprintf("admissiontest: marshalling %T: %v", obj, err))
		}
		return runtime.RawExtension{Raw: b}
	}
}

// Body is the JSON AdmissionReview (admission.k8s.io/v1) carrying r.
func (r Req) Body() []byte {
	req := r.Request()
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Request:  &req,
	})
	if err != nil {
		panic(err)
	}
	return b
}

// Post sends body to path on h as the API server does and returns the recorder.
func Post(h http.Handler, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// Decode parses an AdmissionReview answer.
func Decode(body io.Reader) (*admissionv1.AdmissionReview, error) {
	var ar admissionv1.AdmissionReview
	if err := json.NewDecoder(body).Decode(&ar); err != nil {
		return nil, fmt.Errorf("response is not an AdmissionReview: %w", err)
	}
	if ar.Response == nil {
		return nil, fmt.Errorf("AdmissionReview has no response")
	}
	return &ar, nil
}

// Conformance reports every rule of the AdmissionReview response contract that an answer breaks (empty = none):
// HTTP 200 with application/json, envelope admission.k8s.io/v1 AdmissionReview, the request UID echoed, a status
// whose code and message are set on denials, patch and patchType together (and only on mutating endpoints),
// warnings within 120 characters.
func Conformance(status int, contentType string, ar *admissionv1.AdmissionReview, uid string, mutating bool) []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if status != http.StatusOK {
		bad("HTTP status %d, want 200", status)
	}
	if !strings.HasPrefix(contentType, "application/json") {
		bad("Content-Type %q, want application/json", contentType)
	}
	if ar.APIVersion != admissionv1.SchemeGroupVersion.String() || ar.Kind != "AdmissionReview" {
		bad("envelope %s/%s, want admission.k8s.io/v1 AdmissionReview", ar.APIVersion, ar.Kind)
	}
	r := ar.Response
	if string(r.UID) != uid {
		bad("response uid %q, want %q", r.UID, uid)
	}
	if r.Result == nil {
		bad("response has no status")
	} else if !r.Allowed && (r.Result.Code == 0 || r.Result.Message == "") {
		bad("denial without status code/message: %+v", r.Result)
	}
	if (r.Patch == nil) != (r.PatchType == nil) {
		bad("patch and patchType must come together (patch %d bytes, patchType %v)", len(r.Patch), r.PatchType)
	}
	if r.PatchType != nil && *r.PatchType != admissionv1.PatchTypeJSONPatch {
		bad("patchType %q, want JSONPatch", *r.PatchType)
	}
	if !mutating && (r.Patch != nil || r.PatchType != nil) {
		bad("validating response carries a patch")
	}
	if !r.Allowed && r.Patch != nil {
		bad("denied response carries a patch")
	}
	for _, w := range r.Warnings {
		if len(w) > 120 {
			bad("warning longer than 120 characters: %q", w)
		}
	}
	return errs
}

// IsMutating reports whether path is a mutating endpoint.
func IsMutating(path string) bool { return strings.HasPrefix(path, "/mutate-") }

// Paths lists every endpoint h serves (as admission.Register registers them), sorted.
func Paths(h *admission.Handlers) []string {
	paths := make([]string, 0, 10)
	for p := range h.Endpoints() {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// NamespaceReader is a minimal, map-backed client.Reader for namespaces. It copies on read like an informer cache
// does, without the fake client's JSON round trip, so benchmarks measure the handlers rather than the fake.
type NamespaceReader map[string]*corev1.Namespace

// NewNamespaceReader holds the given namespaces.
func NewNamespaceReader(nss ...*corev1.Namespace) NamespaceReader {
	r := NamespaceReader{}
	for _, ns := range nss {
		r[ns.Name] = ns
	}
	return r
}

// Get implements client.Reader for *corev1.Namespace.
func (r NamespaceReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return fmt.Errorf("NamespaceReader serves namespaces only, got %T", obj)
	}
	src, ok := r[key.Name]
	if !ok {
		return apierrors.NewNotFound(corev1.Resource("namespaces"), key.Name)
	}
	src.DeepCopyInto(ns)
	return nil
}

// List implements client.Reader; it is not supported.
func (r NamespaceReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return fmt.Errorf("NamespaceReader does not list")
}
