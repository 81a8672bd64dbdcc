package aws

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
)

// The parsers below see tenant- and CMK-supplied text; they must never panic and must keep their invariants.

func FuzzParseRoleARN(f *testing.F) {
	for _, s := range []string{"arn:aws:iam::123456789012:role/apeiro-cmk-tenant-acme", "arn:aws:iam::123456789012:role/a/b/c", "arn:aws:iam::1:role/x", "", "arn:::::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRoleARN(s)
		if err != nil {
			return
		}
		if r.String() != s {
			t.Fatalf("round trip %q → %q", s, r.String())
		}
		if !accountRE.MatchString(r.Account) || r.Name == "" || len(r.Name) > 512 {
			t.Fatalf("accepted %q with %+v", s, r)
		}
	})
}

func FuzzParseKeyRef(f *testing.F) {
	for _, s := range []string{"arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", "alias/x", "mrk-0123456789abcdef0123456789abcdef", "arn:aws:kms:eu-central-1:123456789012:alias/a", " x "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKeyRef(s)
		if err != nil {
			return
		}
		if k.IsARN && (!accountRE.MatchString(k.Account) || !validRegion(k.Region)) {
			t.Fatalf("accepted %q with %+v", s, k)
		}
		if len(k.Raw) > maxARNLen || strings.ContainsAny(k.Raw, " \n\x00") {
			t.Fatalf("accepted %q", s)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"", "region: eu-central-1\n", "rolePattern: 'a/{tenant}'\naccounts: ['111122223333']\n", "accessKeyId: x\n", "supportedregions: {source: embedded, value: '{\"regions\":[]}'}\n", "{{{"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConfig(s)
		if err != nil {
			return
		}
		if strings.Count(c.RolePattern, "{tenant}") != 1 || c.callTimeout <= 0 || c.budget <= 0 {
			t.Fatalf("accepted %q with %+v", s, c)
		}
	})
}

func FuzzJWTExpiry(f *testing.F) {
	for _, s := range []string{"a.eyJleHAiOjE3MDAwMDAwMDB9.c", "a.b.c", "", "...", "a.eyJleHAiOiJ4In0.c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = jwtExpiry(s)
	})
}

func FuzzProviderParams(f *testing.F) {
	for _, s := range []string{`{"importToken":"aGk=","keyArn":"arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}`, "{", "", `{"importToken":1}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		st, err := structpb.NewStruct(map[string]any{ImportProviderParams: s})
		if err != nil {
			return
		}
		if pp, err := parseProviderParams(st); err == nil && pp.ImportToken == "" {
			t.Fatalf("accepted %q without a token", s)
		}
	})
}

func FuzzBind(f *testing.F) {
	f.Add("acme", "arn:aws:iam::111122223333:role/apeiro-cmk-tenant-acme", "arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
	f.Add("acme", "arn:aws:iam::111122223333:role/apeiro-cmk-tenant-globex", "alias/x")
	f.Add("", "", "")
	cfg, _ := ParseConfig("region: eu-central-1\n")
	b := newBackend(cfg, defaultFactory())
	f.Fuzz(func(t *testing.T, tenant, role, key string) {
		v, err := structpb.NewStruct(map[string]any{"tenant": tenant, "roleArn": role})
		if err != nil {
			return
		}
		bd, err := b.bind(v)
		if err != nil {
			return
		}
		if bd.role.Name != "apeiro-cmk-tenant-"+bd.tenant {
			t.Fatalf("bound tenant %q to role %s", bd.tenant, bd.role)
		}
		k, _, err := b.resolveKey(bd, key)
		if err == nil && k.IsARN && k.Account != bd.role.Account {
			t.Fatalf("key %s of account %s accepted for role account %s", key, k.Account, bd.role.Account)
		}
	})
}

func FuzzTransformCryptoAccessData(f *testing.F) {
	f.Add("arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", []byte(`{"eu-central-1":{"roleArn":"arn:aws:iam::111122223333:role/apeiro-cmk-tenant-acme","tenant":"acme","certificateSubject":"CN=x"}}`))
	f.Add("k", []byte(`{"r":{}}`))
	f.Add("k", []byte(`{"r":{"secretAccessKey":"x"}}`))
	f.Add("", []byte("{"))
	o := NewOperations()
	f.Fuzz(func(t *testing.T, id string, data []byte) {
		out, err := o.TransformCryptoAccessData(context.Background(), &operationsv1.TransformCryptoAccessDataRequest{NativeKeyId: id, AccessData: data})
		if err != nil {
			return
		}
		var in map[string]json.RawMessage
		if json.Unmarshal(data, &in) != nil || len(in) != len(out.GetTransformedAccessData()) {
			t.Fatalf("output keys %d for input %q", len(out.GetTransformedAccessData()), data)
		}
		// Only the documented fields come out: nothing of the input (credentials included) is passed through.
		for _, v := range out.GetTransformedAccessData() {
			dec := json.NewDecoder(bytes.NewReader(v))
			dec.DisallowUnknownFields()
			var c CryptoAccessData
			if err := dec.Decode(&c); err != nil || c.KeyARN != strings.TrimSpace(id) {
				t.Fatalf("output %s: %v", v, err)
			}
		}
	})
}
