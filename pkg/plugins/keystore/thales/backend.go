package thales

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/pkcs11"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

// Access data fields.
const (
	FieldTenant    = "tenant"
	FieldAccessKey = "accessKey"
	FieldTrustID   = "trustId"
	FieldSubject   = "subject"
	FieldRegion    = "region"
	FieldTrustType = "trustType"
)

// idPrefix starts every CKA_ID this keystore writes: "apeiro-cmk:<tenant>:<random>". The tenant in the id is what
// confines a tenant to its own keys: a lookup only ever considers objects whose id carries the caller's tenant.
const idPrefix = "apeiro-cmk:"

// backend is the configured state shared by the plugins and the Wrapper; replaced whole on Configure.
type backend struct {
	cfg *Config
	// open overrides openModule in unit tests.
	open func(path string) (p11, error)

	// secret caches the access secret for the backend's lifetime (a Configure builds a new backend, so a rotated
	// PIN takes effect on the next Configure or restart).
	secretMu sync.Mutex
	secret   []byte
}

func newBackend(cfg *Config) *backend { return &backend{cfg: cfg} }

// withBudget bounds a call: the caller's deadline, or the configured budget when there is none.
func (b *backend) withBudget(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, b.cfg.budget)
}

// token returns the pool of the token labelled label ("" = the first configured token).
func (b *backend) token(label string) (*pool, string, error) {
	if len(b.cfg.Tokens) == 0 {
		return nil, "", &Error{Code: codes.FailedPrecondition, Field: "tokens", Kind: keychain.ErrUnavailable, Msg: "no PKCS#11 token is configured for the THALES keystore (tokens: [{label, pin}])"}
	}
	for i := range b.cfg.Tokens {
		t := &b.cfg.Tokens[i]
		l, err := t.tokenLabel()
		if err != nil {
			return nil, "", &Error{Code: codes.FailedPrecondition, Field: fmt.Sprintf("tokens[%d]", i), Kind: keychain.ErrUnavailable, Msg: err.Error()}
		}
		if label == "" || l == label {
			return getPool(b.cfg.module(), l, t.PIN, b.cfg.maxSessions()), l, nil
		}
	}
	return nil, "", invalidArg("token", "token %q is not one of the THALES keystore's configured tokens", truncate(label))
}

// run executes fn on a pooled session of p. fn runs in its own goroutine so a token that stops answering cannot
// hold the caller past its deadline (the session comes back to the pool when the token finally answers); a panic
// in the PKCS#11 binding becomes an error.
func (b *backend) run(ctx context.Context, p *pool, what string, fn func(c p11, sh pkcs11.SessionHandle) error) error {
	if b.open != nil {
		p.mu.Lock()
		if p.ctx == nil {
			c, err := b.open(p.module)
			if err != nil {
				p.mu.Unlock()
				return err
			}
			p.ctx = c
		}
		p.mu.Unlock()
	}
	c, sh, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		var ferr error
		defer func() {
			if r := recover(); r != nil {
				ferr = &Error{SDK: kserrors.StatusKeyGenericErr, Msg: fmt.Sprintf("%s: the PKCS#11 binding panicked: %v", what, r)}
			}
			p.release(sh, ferr)
			done <- ferr
		}()
		ferr = fn(c, sh)
	}()
	select {
	case err := <-done:
		if err != nil {
			return mapP11(what, err)
		}
		return nil
	case <-ctx.Done():
		return &Error{Code: codes.DeadlineExceeded, Msg: fmt.Sprintf("%s: token %q did not answer within the deadline", what, p.label), Kind: keychain.ErrUnavailable, Cause: ctx.Err()}
	}
}

// accessSecret is the HMAC key access keys are derived from: the default token's PIN, hashed with a domain label.
// Whoever knows the PIN can already use every key on the token, so deriving from it adds no new secret to manage.
func (b *backend) accessSecret() ([]byte, error) {
	b.secretMu.Lock()
	defer b.secretMu.Unlock()
	if b.secret != nil {
		return b.secret, nil
	}
	if len(b.cfg.Tokens) == 0 {
		return nil, &Error{Code: codes.FailedPrecondition, Field: "tokens", Kind: keychain.ErrUnavailable, Msg: "no PKCS#11 token is configured for the THALES keystore"}
	}
	pin, err := b.cfg.Tokens[0].PIN.LoadString()
	if err != nil {
		return nil, &Error{Code: codes.FailedPrecondition, Field: "pin", Kind: keychain.ErrDenied, Msg: "reading the PIN of the default token: " + err.Error()}
	}
	sum := sha256.Sum256([]byte("apeiro-thales/access-secret/v1\x00" + pin))
	b.secret = sum[:]
	return b.secret, nil
}

// AccessKey derives the access key of tenant (exported for tools and the Wrapper's AccessData).
func AccessKey(secret []byte, tenant string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("apeiro-thales/access/v1\x00" + tenant))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

var tenantBad = strings.NewReplacer(":", "", "\x00", "")

// bind checks {tenant, accessKey} and returns the tenant. Missing fields → StatusInvalidKeyAccessData; a wrong key →
// StatusProviderAuthenticationError. Other fields (CMK's authType, clientCert, …; an Account's keyRef, secretRef)
// are ignored.
func (b *backend) bind(values *structpb.Struct) (string, error) {
	tenant, key := str(values, FieldTenant), str(values, FieldAccessKey)
	var missing []string
	if tenant == "" {
		missing = append(missing, FieldTenant)
	}
	if key == "" {
		missing = append(missing, FieldAccessKey)
	}
	if len(missing) > 0 {
		return "", &Error{SDK: kserrors.StatusInvalidKeyAccessData, Field: strings.Join(missing, ","), Kind: keychain.ErrDenied,
			Msg: "access data is missing " + strings.Join(missing, " and ")}
	}
	if len(tenant) > 128 || tenantBad.Replace(tenant) != tenant {
		return "", authErr(FieldTenant, "tenant %q is not a tenant name", truncate(tenant))
	}
	secret, err := b.accessSecret()
	if err != nil {
		return "", err
	}
	if !hmac.Equal([]byte(key), []byte(AccessKey(secret, tenant))) {
		return "", authErr(FieldAccessKey, "the access key does not belong to tenant %q", tenant)
	}
	return tenant, nil
}

func str(s *structpb.Struct, name string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(s.GetFields()[name].GetStringValue())
}

// keyObj is a key found on the token.
type keyObj struct {
	handle   pkcs11.ObjectHandle
	class    uint
	keyType  uint
	bits     int
	label    string
	id       []byte
	enabled  bool
	created  time.Time
	deleteAt time.Time // set when pending deletion
}

// tenantID is the CKA_ID of a new key: apeiro-cmk:<tenant>:<random>:<creation unix seconds>. DeleteKey with a
// window appends ":<deletion unix seconds>". The dates live in the id because SoftHSM 2.6 cannot read back
// CKA_START_DATE / CKA_END_DATE (CKR_GENERAL_ERROR), and CKA_ID is modifiable on every PKCS#11 token.
func tenantID(tenant string) []byte {
	r := make([]byte, 8)
	_, _ = rand.Read(r)
	return []byte(idPrefix + tenant + ":" + hex.EncodeToString(r) + ":" + strconv.FormatInt(time.Now().Unix(), 10))
}

func ownedBy(id []byte, tenant string) bool {
	return bytes.HasPrefix(id, []byte(idPrefix+tenant+":"))
}

// maxLabelMatches bounds how many objects sharing one label a lookup reads.
const maxLabelMatches = 4096

// find returns the tenant's key named by ref (its secret key or RSA private key). Objects of other tenants with the
// same label are invisible: the answer is "not found", so a tenant cannot even learn they exist.
func find(c p11, sh pkcs11.SessionHandle, ref KeyRef, tenant string) (*keyObj, error) {
	tmpl := []*pkcs11.Attribute{}
	if ref.Object != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, ref.Object))
	}
	if ref.ID != nil {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, ref.ID))
	}
	switch ref.Type {
	case "secret-key":
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY))
	case "private":
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY))
	}
	if err := c.FindObjectsInit(sh, tmpl); err != nil {
		return nil, err
	}
	// Several tenants may use the same label: collect every match (bounded), then keep the caller's.
	var hs []pkcs11.ObjectHandle
	for len(hs) < maxLabelMatches {
		more, _, err := c.FindObjects(sh, 64)
		if err != nil {
			_ = c.FindObjectsFinal(sh)
			return nil, err
		}
		if len(more) == 0 {
			break
		}
		hs = append(hs, more...)
	}
	_ = c.FindObjectsFinal(sh)
	for _, h := range hs {
		k, err := readKey(c, sh, h)
		if err != nil {
			return nil, err
		}
		if k == nil || !ownedBy(k.id, tenant) {
			continue
		}
		return k, nil
	}
	return nil, nil
}

func readKey(c p11, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) (*keyObj, error) {
	base := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil), pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, nil),
	}
	// One call for the common case (an AES key has CKA_VALUE_LEN); anything else has no such attribute and is read
	// again without it.
	attrs, err := c.GetAttributeValue(sh, h, append(base, pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil)))
	if err != nil && (isRV(err, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID) || isRV(err, pkcs11.CKR_ATTRIBUTE_SENSITIVE)) {
		attrs, err = c.GetAttributeValue(sh, h, base)
	}
	if err != nil {
		return nil, err
	}
	k := &keyObj{handle: h}
	for _, a := range attrs {
		switch a.Type {
		case pkcs11.CKA_CLASS:
			k.class = ulong(a.Value)
		case pkcs11.CKA_KEY_TYPE:
			k.keyType = ulong(a.Value)
		case pkcs11.CKA_LABEL:
			k.label = string(a.Value)
		case pkcs11.CKA_ID:
			k.id = a.Value
		case pkcs11.CKA_DECRYPT:
			k.enabled = len(a.Value) == 1 && a.Value[0] == 1
		case pkcs11.CKA_VALUE_LEN:
			k.bits = int(ulong(a.Value)) * 8
		}
	}
	if k.class != pkcs11.CKO_SECRET_KEY && k.class != pkcs11.CKO_PRIVATE_KEY {
		return nil, nil
	}
	k.created, k.deleteAt = parseID(k.id)
	if k.keyType == pkcs11.CKK_RSA {
		if v, err := c.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil)}); err == nil && len(v) == 1 {
			k.bits = len(v[0].Value) * 8
		}
	}
	return k, nil
}

// ulong decodes a CK_ULONG attribute value (native byte order, little endian on the platforms we build for).
func ulong(b []byte) uint {
	var v uint
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint(b[i])
	}
	return v
}

// state is the key state GetKey reports.
func (k *keyObj) state() string {
	switch {
	case !k.deleteAt.IsZero():
		return StatePendingDeletion
	case k.enabled:
		return StateEnabled
	}
	return StateDisabled
}

// deletionDue reports whether a key pending deletion has reached its date.
func (k *keyObj) deletionDue(now time.Time) bool {
	return !k.deleteAt.IsZero() && !now.Before(k.deleteAt)
}

// parseID reads the creation and deletion times from a CKA_ID this keystore wrote (zero when absent).
func parseID(id []byte) (created, deleteAt time.Time) {
	parts := bytes.Split(id, []byte(":"))
	// apeiro-cmk, tenant, random, created[, deleteAt]
	unix := func(b []byte) time.Time {
		sec, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil || sec <= 0 {
			return time.Time{}
		}
		return time.Unix(sec, 0).UTC()
	}
	if len(parts) >= 4 {
		created = unix(parts[3])
	}
	if len(parts) == 5 {
		deleteAt = unix(parts[4])
	}
	return created, deleteAt
}
