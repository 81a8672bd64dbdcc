package ksop_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreerr"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/ksop"
)

const errs = keystoreerr.Backend("test")

func identity(s string) string { return s }

func TestParseGrant(t *testing.T) {
	mgmt, crypto := managementv1.TrustType_TRUST_TYPE_MANAGEMENT, managementv1.TrustType_TRUST_TYPE_CRYPTO
	for _, tc := range []struct {
		name      string
		req       *managementv1.GrantTrustRequest
		wantField string // "" = valid
		wantKind  string
	}{
		{name: "management", req: &managementv1.GrantTrustRequest{Subject: " CN=a ", Type: mgmt, Region: " eu "}, wantKind: "management"},
		{name: "crypto", req: &managementv1.GrantTrustRequest{Subject: "CN=a", Type: crypto}, wantKind: "crypto"},
		{name: "blank subject", req: &managementv1.GrantTrustRequest{Subject: "  ", Type: mgmt}, wantField: "subject"},
		{name: "oversized subject", req: &managementv1.GrantTrustRequest{Subject: strings.Repeat("x", ksop.MaxSubjectBytes+1), Type: mgmt}, wantField: "subject"},
		{name: "no type", req: &managementv1.GrantTrustRequest{Subject: "CN=a"}, wantField: "type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := ksop.ParseGrant(tc.req, errs.InvalidArg)
			if tc.wantField != "" {
				var e *keystoreerr.Error
				if !errors.As(err, &e) || e.Field != tc.wantField || e.Code != codes.InvalidArgument {
					t.Fatalf("err = %#v, want InvalidArgument on %s", err, tc.wantField)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tr.Kind != tc.wantKind || tr.Subject != strings.TrimSpace(tc.req.GetSubject()) || tr.Region != strings.TrimSpace(tc.req.GetRegion()) {
				t.Fatalf("trust = %+v", tr)
			}
			// The id is what RemoveTrust accepts, and granting again names the same record.
			again, _ := ksop.ParseGrant(tc.req, errs.InvalidArg)
			ad, _ := structpb.NewStruct(map[string]any{ksop.FieldTrustID: tr.ID})
			if id, err := ksop.TrustID(ad, errs.AccessData, identity); err != nil || id != tr.ID || again.ID != tr.ID {
				t.Fatalf("TrustID(%q) = %q, %v; again %q", tr.ID, id, err, again.ID)
			}
		})
	}
}

func TestTrustIDRefusesForeignValues(t *testing.T) {
	for _, v := range []string{"", "management-", "management-0123456789abcdeg", "other-0123456789abcdef", "crypto-0123456789abcdef0"} {
		ad, _ := structpb.NewStruct(map[string]any{ksop.FieldTrustID: v})
		_, err := ksop.TrustID(ad, errs.AccessData, identity)
		if st, _ := status.FromError(errs.GRPC(err)); err == nil || st.Code() != codes.InvalidArgument {
			t.Errorf("TrustID(%q) = %v, want invalid key access data", v, err)
		}
	}
	if _, err := ksop.TrustID(nil, errs.AccessData, identity); err == nil {
		t.Error("TrustID(nil) succeeded")
	}
}

func TestDeletionWindow(t *testing.T) {
	w := func(v int32) *int32 { return &v }
	for _, tc := range []struct {
		window *int32
		want   int32
		ok     bool
	}{{nil, 7, true}, {w(0), 0, true}, {w(30), 30, true}, {w(31), 0, false}, {w(-1), 0, false}} {
		got, err := ksop.DeletionWindow(&operationsv1.DeleteKeyRequest{Window: tc.window}, 7, 0, 30, " for X", errs.InvalidArg)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("window %v: got %d, %v", tc.window, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), "0..30 days for X") {
			t.Errorf("message %q does not name the range", err)
		}
	}
}

func TestCryptoProblem(t *testing.T) {
	entry := func(m map[string]any) *structpb.Value {
		s, _ := structpb.NewStruct(m)
		return structpb.NewStructValue(s)
	}
	for _, tc := range []struct {
		name   string
		crypto map[string]*structpb.Value
		want   string // substring; "" = no problem
	}{
		{name: "none"},
		{name: "same tenant", crypto: map[string]*structpb.Value{"eu": entry(map[string]any{"tenant": "acme"})}},
		{name: "no tenant", crypto: map[string]*structpb.Value{"eu": entry(map[string]any{})}},
		{name: "not an object", crypto: map[string]*structpb.Value{"eu": structpb.NewStringValue("x")}, want: "crypto[eu]: must be an object"},
		{name: "other tenant", crypto: map[string]*structpb.Value{"eu": entry(map[string]any{"tenant": "evil"})}, want: `tenant "evil" differs`},
		{name: "extra check", crypto: map[string]*structpb.Value{"eu": entry(map[string]any{"pin": "1"})}, want: "crypto[eu]: pin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ksop.CryptoProblem(&structpb.Struct{Fields: tc.crypto}, "tenant", "acme", identity, func(r string, s *structpb.Struct) string {
				if ksop.Str(s, "pin") != "" {
					return "crypto[" + r + "]: pin"
				}
				return ""
			})
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("problem = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestKeystoreResponse(t *testing.T) {
	access := map[string]any{"tenant": "ks-1"}
	r := ksop.KeystoreResponse(nil, "eu-1", "ks-1", access)
	if r.GetKeyManagementConfig().GetLocalityId() != "eu-1" || len(r.GetSupportedRegions()) != 0 {
		t.Fatalf("fallback locality: %v", r)
	}
	r = ksop.KeystoreResponse([]keystoreconfig.Region{{Name: "EU", TechnicalName: "eu-2"}, {Name: "US", TechnicalName: "us-1"}}, "eu-1", "ks-1", access)
	if r.GetRoleManagementConfig().GetLocalityId() != "eu-2" || len(r.GetSupportedRegions()) != 2 {
		t.Fatalf("first region wins: %v", r)
	}
	// Each config gets its own copy: a caller editing one must not change the other.
	if r.GetRoleManagementConfig().GetAccessData() == r.GetKeyManagementConfig().GetAccessData() {
		t.Fatal("role and key management share one access data struct")
	}
}

type cfg struct{ ignored keystoreconfig.Warnings }

func (c *cfg) IgnoredKeys() keystoreconfig.Warnings { return c.ignored }

type be struct{ yaml string }

func TestHostConfigure(t *testing.T) {
	var h ksop.Host[*cfg, be]
	var built []string
	parse := func(y string) (*cfg, error) {
		if y == "bad" {
			return nil, errors.New("does not parse")
		}
		return &cfg{ignored: keystoreconfig.Warnings{"x"}}, nil
	}
	h.Init("test", ksop.Operations, parse, func(*cfg) *be { built = append(built, "b"); return &be{yaml: "empty"} })
	first := h.Load()
	if first == nil || first.yaml != "empty" {
		t.Fatalf("Init did not install the empty configuration: %v", first)
	}
	if _, err := h.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: "bad"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad configuration: %v", err)
	}
	if h.Load() != first {
		t.Fatal("a configuration that does not parse replaced the running backend")
	}
	resp, err := h.Configure(context.Background(), &configv1.ConfigureRequest{YamlConfiguration: "ok"})
	if err != nil || resp.GetBuildInfo() != `{"plugin":"apeiro-keystore-test","type":"KeystoreInstanceKeyOperation"}` {
		t.Fatalf("Configure = %v, %v", resp, err)
	}
	if h.Load() == first || len(built) != 2 {
		t.Fatal("Configure did not swap the backend")
	}
}

func FuzzParseGrant(f *testing.F) {
	f.Add("CN=a", int32(1), "eu")
	f.Add("", int32(2), "")
	f.Add(strings.Repeat("x", 2000), int32(9), "\x00")
	f.Fuzz(func(t *testing.T, subject string, typ int32, region string) {
		req := &managementv1.GrantTrustRequest{Subject: subject, Type: managementv1.TrustType(typ), Region: region}
		tr, err := ksop.ParseGrant(req, errs.InvalidArg)
		if err != nil {
			return
		}
		ad, _ := structpb.NewStruct(map[string]any{ksop.FieldTrustID: tr.ID})
		if id, err := ksop.TrustID(ad, errs.AccessData, identity); err != nil || id != tr.ID {
			t.Fatalf("ParseGrant made id %q that TrustID refuses: %v", tr.ID, err)
		}
		if len(tr.Subject) == 0 || len(tr.Subject) > ksop.MaxSubjectBytes {
			t.Fatalf("subject of %d bytes accepted", len(tr.Subject))
		}
	})
}

func TestTransformInput(t *testing.T) {
	parse := func(id string) (int, error) {
		switch id {
		case "bad":
			return 0, errors.New("not a key")
		case "backend":
			return 0, errs.InvalidArg("keyId", "backend says no")
		}
		return len(id), nil
	}
	for _, tc := range []struct {
		name, id, data string
		wantCode       codes.Code
		wantMsg        string
	}{
		{name: "valid", id: " key ", data: `{"eu":{"tenant":"acme"}}`, wantCode: codes.OK},
		{name: "missing id", id: "  ", data: `{"eu":{}}`, wantCode: codes.InvalidArgument},
		{name: "parse error", id: "bad", data: `{"eu":{}}`, wantCode: codes.InvalidArgument, wantMsg: "native_key_id: not a key"},
		{name: "backend error passes", id: "backend", data: `{"eu":{}}`, wantCode: codes.InvalidArgument, wantMsg: "backend says no"},
		{name: "not JSON", id: "key", data: `{`, wantCode: codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, n, in, err := ksop.TransformInput(&operationsv1.TransformCryptoAccessDataRequest{NativeKeyId: tc.id, AccessData: []byte(tc.data)}, parse)
			st, _ := status.FromError(err)
			if st.Code() != tc.wantCode || (tc.wantMsg != "" && st.Message() != tc.wantMsg) {
				t.Fatalf("err = %v, want %s %q", err, tc.wantCode, tc.wantMsg)
			}
			if err == nil && (id != "key" || n != 3 || in["eu"]["tenant"] != "acme") {
				t.Fatalf("id %q, key %d, data %v", id, n, in)
			}
		})
	}
}
