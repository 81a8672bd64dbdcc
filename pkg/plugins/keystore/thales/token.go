package thales

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"
)

// p11 lists exactly the PKCS#11 calls the plugin makes (github.com/miekg/pkcs11, the binding crypto11 is built
// on). Every call goes through a pooled, logged-in session of one token.
type p11 interface {
	GetSlotList(tokenPresent bool) ([]uint, error)
	GetTokenInfo(slotID uint) (pkcs11.TokenInfo, error)
	OpenSession(slotID uint, flags uint) (pkcs11.SessionHandle, error)
	CloseSession(sh pkcs11.SessionHandle) error
	Login(sh pkcs11.SessionHandle, userType uint, pin string) error
	FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error
	FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error)
	FindObjectsFinal(sh pkcs11.SessionHandle) error
	GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error)
	SetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) error
	GenerateKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	GenerateKeyPair(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, public, private []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error)
	CreateObject(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	DestroyObject(sh pkcs11.SessionHandle, oh pkcs11.ObjectHandle) error
	EncryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Encrypt(sh pkcs11.SessionHandle, message []byte) ([]byte, error)
	DecryptInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error
	Decrypt(sh pkcs11.SessionHandle, cipher []byte) ([]byte, error)
}

// modules holds one initialised PKCS#11 context per module path for the whole process: C_Initialize is
// process-wide, and C_Finalize while another user of the module (crypto11, a second plugin instance) is active
// would break it, so modules are never finalised.
var (
	modulesMu sync.Mutex
	modules   = map[string]*pkcs11.Ctx{}
)

func openModule(path string) (p11, error) {
	if path == "" {
		return nil, &Error{Code: codeFailedPrecondition, Field: "module", Kind: errUnavailableKind, Msg: "no PKCS#11 module: set module in the THALES configuration or APEIRO_PKCS11_MODULE"}
	}
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if c := modules[path]; c != nil {
		return c, nil
	}
	c := pkcs11.New(path)
	if c == nil {
		return nil, &Error{Code: codeFailedPrecondition, Field: "module", Kind: errUnavailableKind, Msg: fmt.Sprintf("PKCS#11 module %s cannot be loaded", truncate(path))}
	}
	if err := c.Initialize(); err != nil && !isRV(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		c.Destroy()
		return nil, &Error{Code: codeUnavailable, Field: "module", Kind: errUnavailableKind, Msg: fmt.Sprintf("initialising PKCS#11 module %s: %v (for SoftHSM: is SOFTHSM2_CONF set and its token directory present?)", truncate(path), err), Cause: err}
	}
	modules[path] = c
	return c, nil
}

// pool is the bounded set of logged-in sessions of one token. Sessions are opened on demand up to max and reused;
// a session whose token reports a device or session error is closed instead of being returned.
type pool struct {
	module string
	label  string
	pin    *keystoreconfig.SourceRef

	sem  chan struct{}
	idle chan pkcs11.SessionHandle

	mu   sync.Mutex
	ctx  p11
	slot uint
	ok   bool // slot found and user logged in
}

// pools are shared process-wide per (module, token label): a reconfiguration keeps the sessions and the login.
var (
	poolsMu sync.Mutex
	pools   = map[string]*pool{}
)

func getPool(module, label string, pin *keystoreconfig.SourceRef, max int) *pool {
	poolsMu.Lock()
	defer poolsMu.Unlock()
	k := module + "\x00" + label
	if p := pools[k]; p != nil {
		p.mu.Lock()
		p.pin = pin
		p.mu.Unlock()
		return p
	}
	p := &pool{module: module, label: label, pin: pin, sem: make(chan struct{}, max), idle: make(chan pkcs11.SessionHandle, max)}
	pools[k] = p
	return p
}

// acquire returns a logged-in session, waiting for a free one until ctx ends.
func (p *pool) acquire(ctx context.Context) (p11, pkcs11.SessionHandle, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, &Error{Code: codeDeadlineExceeded, Kind: errUnavailableKind, Msg: fmt.Sprintf("token %q: no free PKCS#11 session before the deadline (all %d in use)", p.label, cap(p.sem)), Cause: ctx.Err()}
	}
	c, sh, err := p.session()
	if err != nil {
		<-p.sem
		return nil, 0, err
	}
	return c, sh, nil
}

func (p *pool) session() (p11, pkcs11.SessionHandle, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ok {
		select {
		case sh := <-p.idle:
			return p.ctx, sh, nil
		default:
		}
	}
	if p.ctx == nil {
		c, err := openModule(p.module)
		if err != nil {
			return nil, 0, err
		}
		p.ctx = c
	}
	if !p.ok {
		slot, err := findSlot(p.ctx, p.label)
		if err != nil {
			return nil, 0, err
		}
		p.slot = slot
	}
	sh, err := p.ctx.OpenSession(p.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		p.ok = false
		return nil, 0, mapP11(fmt.Sprintf("opening a session on token %q", p.label), err)
	}
	if !p.ok {
		pin, err := p.pin.LoadString()
		if err != nil {
			_ = p.ctx.CloseSession(sh)
			return nil, 0, &Error{Code: codeFailedPrecondition, Field: "pin", Kind: errDeniedKind, Msg: fmt.Sprintf("token %q: reading the PIN: %v", p.label, err)}
		}
		if err := p.ctx.Login(sh, pkcs11.CKU_USER, pin); err != nil && !isRV(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
			_ = p.ctx.CloseSession(sh)
			return nil, 0, mapP11(fmt.Sprintf("logging in to token %q", p.label), err)
		}
		p.ok = true
	}
	return p.ctx, sh, nil
}

// release returns a session to the pool, or closes it when err says the session or the token is gone.
func (p *pool) release(sh pkcs11.SessionHandle, err error) {
	defer func() { <-p.sem }()
	if err != nil && sessionBroken(err) {
		p.mu.Lock()
		_ = p.ctx.CloseSession(sh)
		p.ok = false
		// Drain idle sessions: they belong to the same (gone) token state.
		for {
			select {
			case s := <-p.idle:
				_ = p.ctx.CloseSession(s)
				continue
			default:
			}
			break
		}
		p.mu.Unlock()
		return
	}
	select {
	case p.idle <- sh:
	default:
		p.mu.Lock()
		_ = p.ctx.CloseSession(sh)
		p.mu.Unlock()
	}
}

func findSlot(c p11, label string) (uint, error) {
	slots, err := c.GetSlotList(true)
	if err != nil {
		return 0, mapP11("listing PKCS#11 slots", err)
	}
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if strings.TrimRight(ti.Label, " \x00") == label {
			return s, nil
		}
	}
	return 0, &Error{Code: codeFailedPrecondition, Field: "token", Kind: errUnavailableKind, Msg: fmt.Sprintf("no PKCS#11 token labelled %q is present (%d slots with tokens)", label, len(slots))}
}

// isRV reports whether err is the PKCS#11 return value rv.
func isRV(err error, rv uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == rv
}

// sessionBroken: the session, the login or the token itself is gone; the pool must start over.
func sessionBroken(err error) bool {
	for _, rv := range []uint{pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_DEVICE_REMOVED,
		pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED} {
		if isRV(err, rv) {
			return true
		}
	}
	return false
}
