package thales

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"

	"github.com/apeirora/apeiro-cmk/pkg/keychain"
)

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name, yaml, wantErr string
	}{
		{name: "empty", yaml: ""},
		{name: "file PIN", yaml: "module: /usr/lib/x.so\ntokens:\n  - label: a\n    pin: {source: file, file: {path: /p}}\n"},
		{name: "env PIN", yaml: "tokens:\n  - label: a\n    pin: {source: env, env: PIN}\n"},
		{name: "label ref", yaml: "tokens:\n  - labelRef: {source: env, env: LABEL}\n    pin: {source: env, env: PIN}\n"},
		{name: "inline PIN", yaml: "tokens:\n  - label: a\n    pin: \"1234\"\n", wantErr: "never inline"},
		{name: "embedded PIN", yaml: "tokens:\n  - label: a\n    pin: {source: embedded, value: \"1234\"}\n", wantErr: "never inline"},
		{name: "PIN elsewhere", yaml: "userPin: 1234\n", wantErr: "never inline"},
		{name: "missing PIN", yaml: "tokens:\n  - label: a\n", wantErr: "pin is required"},
		{name: "both labels", yaml: "tokens:\n  - label: a\n    labelRef: {source: env, env: L}\n    pin: {source: env, env: P}\n", wantErr: "exactly one of label"},
		{name: "long label", yaml: "tokens:\n  - label: " + strings.Repeat("a", 33) + "\n    pin: {source: env, env: P}\n", wantErr: "printable ASCII"},
		{name: "duplicate", yaml: "tokens:\n  - label: a\n    pin: {source: env, env: P}\n  - label: a\n    pin: {source: env, env: P}\n", wantErr: "twice"},
		{name: "relative module", yaml: "module: libsofthsm2.so\n", wantErr: "absolute"},
		{name: "sessions", yaml: "maxSessions: 1000\n", wantErr: "maxSessions"},
		{name: "budget", yaml: "budget: 1ns\n", wantErr: "budget"},
		{name: "typo", yaml: "tokns: []\n", wantErr: "tokens"},
		{name: "cmk regions", yaml: "supportedregions:\n  source: embedded\n  value: '{\"regions\":[{\"name\":\"x\",\"technicalName\":\"x-1\"}]}'\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(tc.yaml)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseConfig = %v, %v; want error containing %q", c, err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "1234") {
				t.Fatalf("error discloses the PIN: %v", err)
			}
		})
	}
}

func TestParseKeyRef(t *testing.T) {
	cases := []struct {
		in      string
		want    KeyRef
		wantErr string
	}{
		{in: "pkcs11:token=acme;object=acme-l1;type=secret-key", want: KeyRef{Token: "acme", Object: "acme-l1", Type: "secret-key"}},
		{in: "pkcs11:object=my%20key;id=%01%02", want: KeyRef{Object: "my key", ID: []byte{1, 2}}},
		{in: "PKCS11:object=k;manufacturer=SoftHSM%20project;x-vendor=1", want: KeyRef{Object: "k"}},
		{in: "plain-label", want: KeyRef{Object: "plain-label"}},
		{in: "", wantErr: "empty"},
		{in: "pkcs11:", wantErr: "must name the key"},
		{in: "pkcs11:token=a", wantErr: "must name the key"},
		{in: "pkcs11:object=a;object=b", wantErr: "twice"},
		{in: "pkcs11:object=a;type=cert", wantErr: "does not name a key"},
		{in: "pkcs11:object=a;bogus=1", wantErr: "not known"},
		{in: "pkcs11:object=a?pin-value=1234", wantErr: "never inline"},
		{in: "pkcs11:object=a?pin-source=file:/etc/pin", wantErr: "never inline"},
		{in: "pkcs11:object=a?module-path=/tmp/evil.so", wantErr: "module"},
		{in: "pkcs11:object=%zz", wantErr: "percent"},
		{in: "pkcs11:object", wantErr: "name=value"},
		{in: "pkcs11:token=" + strings.Repeat("t", 33) + ";object=a", wantErr: "token"},
		{in: "pkcs11:" + strings.Repeat("a", maxKeyRefBytes), wantErr: "longer"},
		{in: "a;b", wantErr: "label"},
	}
	for _, tc := range cases {
		got, err := ParseKeyRef(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseKeyRef(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.Token != tc.want.Token || got.Object != tc.want.Object || string(got.ID) != string(tc.want.ID) || got.Type != tc.want.Type {
			t.Errorf("ParseKeyRef(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		// String round-trips.
		if back, err := ParseKeyRef(got.String()); err != nil || back.Object != got.Object || string(back.ID) != string(got.ID) {
			t.Errorf("round trip of %q via %q = %+v, %v", tc.in, got.String(), back, err)
		}
	}
}

func FuzzParseKeyRef(f *testing.F) {
	for _, s := range []string{"pkcs11:token=acme;object=acme-l1;type=secret-key", "pkcs11:id=%01?pin-value=1", "label", "pkcs11:object=%4", "pkcs11:;;=;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKeyRef(s)
		if err != nil {
			return
		}
		if k.Object == "" && k.ID == nil {
			t.Fatalf("accepted %q without object or id", s)
		}
		back, err := ParseKeyRef(k.String())
		if err != nil || back.Object != k.Object || string(back.ID) != string(k.ID) || back.Token != k.Token || back.Type != k.Type {
			t.Fatalf("round trip of %q via %q = %+v, %v", s, k.String(), back, err)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"", "tokens:\n  - label: a\n    pin: {source: file, file: {path: /p}}\n", "pin: 1", "tokens: [{label: a, pin: 1}]", "maxSessions: -1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConfig(s)
		if err != nil {
			return
		}
		for _, tok := range c.Tokens {
			if tok.PIN == nil || checkRef(tok.PIN) != nil {
				t.Fatalf("accepted a token without a PIN reference: %q", s)
			}
		}
		if c.maxSessions() < 1 || c.budget <= 0 {
			t.Fatalf("accepted bounds %d/%s", c.maxSessions(), c.budget)
		}
	})
}

// fakeP11 is a token that blocks or fails; only the calls the tests reach are implemented.
type fakeP11 struct {
	p11
	block   chan struct{}
	findErr error
	closed  int
}

func (f *fakeP11) GetSlotList(bool) ([]uint, error) { return []uint{7}, nil }
func (f *fakeP11) GetTokenInfo(uint) (pkcs11.TokenInfo, error) {
	return pkcs11.TokenInfo{Label: "fake"}, nil
}
func (f *fakeP11) OpenSession(uint, uint) (pkcs11.SessionHandle, error) { return 1, nil }
func (f *fakeP11) CloseSession(pkcs11.SessionHandle) error              { f.closed++; return nil }
func (f *fakeP11) Login(pkcs11.SessionHandle, uint, string) error       { return nil }
func (f *fakeP11) FindObjectsInit(pkcs11.SessionHandle, []*pkcs11.Attribute) error {
	if f.block != nil {
		<-f.block
	}
	return f.findErr
}
func (f *fakeP11) FindObjects(pkcs11.SessionHandle, int) ([]pkcs11.ObjectHandle, bool, error) {
	return nil, false, nil
}
func (f *fakeP11) FindObjectsFinal(pkcs11.SessionHandle) error { return nil }

func fakeBackend(t *testing.T, f *fakeP11, extra string) (*backend, *Operations) {
	t.Setenv("FAKE_PIN", "0000")
	cfg, err := ParseConfig("module: /fake/" + t.Name() + ".so\ntokens:\n  - label: fake\n    pin: {source: env, env: FAKE_PIN}\n" + extra)
	if err != nil {
		t.Fatal(err)
	}
	b := newBackend(cfg)
	b.open = func(string) (p11, error) { return f, nil }
	o := NewOperations()
	o.Store(b)
	return b, o
}

// TestDeadline: a token that stops answering, and a pool whose only session is busy, both return at the caller's
// deadline instead of hanging.
func TestDeadline(t *testing.T) {
	f := &fakeP11{block: make(chan struct{})}
	defer close(f.block)
	b, _ := fakeBackend(t, f, "maxSessions: 1\n")
	pl, _, err := b.token("")
	if err != nil {
		t.Fatal(err)
	}
	for i, what := range []string{"token hangs", "pool exhausted"} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		err := b.run(ctx, pl, what, func(c p11, sh pkcs11.SessionHandle) error {
			return c.FindObjectsInit(sh, nil)
		})
		cancel()
		if status.Code(err) != codes.DeadlineExceeded || !errors.Is(err, keychain.ErrUnavailable) {
			t.Fatalf("%d %s: %v", i, what, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("%s: returned after %s", what, d)
		}
	}
}

// TestTokenGone: a token that reports CKR_DEVICE_REMOVED mid-operation gives Unavailable and the pool starts over
// (the session is closed, the next call finds the slot and logs in again).
func TestTokenGone(t *testing.T) {
	f := &fakeP11{findErr: pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED)}
	b, _ := fakeBackend(t, f, "")
	pl, _, _ := b.token("")
	err := b.run(context.Background(), pl, "GetKey", func(c p11, sh pkcs11.SessionHandle) error { return c.FindObjectsInit(sh, nil) })
	if status.Code(err) != codes.Unavailable || !errors.Is(err, keychain.ErrUnavailable) || !strings.Contains(err.Error(), "not present") {
		t.Fatalf("device removed: %v", err)
	}
	if pl.ok || f.closed != 1 {
		t.Fatalf("pool not reset: ok=%v closed=%d", pl.ok, f.closed)
	}
	f.findErr = nil
	if err := b.run(context.Background(), pl, "GetKey", func(c p11, sh pkcs11.SessionHandle) error { return c.FindObjectsInit(sh, nil) }); err != nil {
		t.Fatalf("after the token came back: %v", err)
	}
}

// TestPanicRecovered: a panic inside the binding becomes an error and the session slot is given back.
func TestPanicRecovered(t *testing.T) {
	f := &fakeP11{}
	b, _ := fakeBackend(t, f, "maxSessions: 1\n")
	pl, _, _ := b.token("")
	for range 2 {
		err := b.run(context.Background(), pl, "Wrap", func(p11, pkcs11.SessionHandle) error { panic("token exploded") })
		if err == nil || !strings.Contains(err.Error(), "panicked") {
			t.Fatalf("panic: %v", err)
		}
	}
}

func TestMapP11(t *testing.T) {
	cases := []struct {
		rv   uint
		sdk  bool
		code codes.Code
		kind error
	}{
		{pkcs11.CKR_PIN_INCORRECT, true, codes.Unauthenticated, keychain.ErrDenied},
		{pkcs11.CKR_PIN_LOCKED, true, codes.Unauthenticated, keychain.ErrDenied},
		{pkcs11.CKR_TOKEN_NOT_PRESENT, false, codes.Unavailable, keychain.ErrUnavailable},
		{pkcs11.CKR_DEVICE_ERROR, false, codes.Unavailable, keychain.ErrUnavailable},
		{pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED, false, codes.FailedPrecondition, keychain.ErrKeyDisabled},
		{pkcs11.CKR_ENCRYPTED_DATA_INVALID, false, codes.InvalidArgument, keychain.ErrIntegrity},
	}
	for _, tc := range cases {
		e := mapP11("op", pkcs11.Error(tc.rv))
		if !errors.Is(e, tc.kind) {
			t.Errorf("%#x: kind %v", tc.rv, e)
		}
		st := e.GRPCStatus()
		if tc.sdk {
			if !kserrors.IsStatus(st.Err(), kserrors.StatusProviderAuthenticationError) {
				t.Errorf("%#x: %v, want the SDK authentication status", tc.rv, st)
			}
			continue
		}
		if st.Code() != tc.code {
			t.Errorf("%#x: code %s, want %s", tc.rv, st.Code(), tc.code)
		}
	}
}

func TestEncodeAAD(t *testing.T) {
	a := encodeAAD(map[string]string{"a": "bc", "d": ""})
	b := encodeAAD(map[string]string{"a": "b", "cd": ""})
	if string(a) == string(b) {
		t.Fatal("aad encoding is ambiguous")
	}
	if string(encodeAAD(map[string]string{"x": "1", "y": "2"})) != string(encodeAAD(map[string]string{"y": "2", "x": "1"})) {
		t.Fatal("aad encoding depends on map order")
	}
}
