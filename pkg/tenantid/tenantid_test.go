package tenantid

import "testing"

func TestFormatParse(t *testing.T) {
	u, err := Format("apeiro.example", "acme", "component", "crypto-manager")
	if err != nil {
		t.Fatal(err)
	}
	if got := u.String(); got != "spiffe://apeiro.example/tenant/acme/component/crypto-manager" {
		t.Fatalf("Format = %s", got)
	}
	td, tenant, rest, err := Parse(u.String())
	if err != nil || td != "apeiro.example" || tenant != "acme" || len(rest) != 2 || rest[1] != "crypto-manager" {
		t.Fatalf("Parse = %q %q %q %v", td, tenant, rest, err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, id := range []string{
		"", "https://apeiro.example/tenant/acme", "spiffe:///tenant/acme", "spiffe://apeiro.example/",
		"spiffe://apeiro.example/tenants/acme", "spiffe://apeiro.example/tenant/Acme", "spiffe://apeiro.example/tenant/",
		"spiffe://apeiro.example/tenant/acme//x", "spiffe://apeiro.example/tenant/acme/..", "spiffe://u@apeiro.example/tenant/acme",
		"spiffe://apeiro.example/tenant/acme?x=1", "spiffe://apeiro.example/tenant/a_b",
	} {
		if _, _, _, err := Parse(id); err == nil {
			t.Errorf("Parse(%q) accepted", id)
		}
	}
	if _, err := Format("apeiro.example", "acme", "../x"); err == nil {
		t.Error("Format accepted a path segment with a slash")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("spiffe://apeiro.example/tenant/acme/component/crypto-manager")
	f.Add("spiffe://x/tenant/a")
	f.Fuzz(func(t *testing.T, id string) {
		td, tenant, rest, err := Parse(id)
		if err != nil {
			return
		}
		u, err := Format(td, tenant, rest...)
		if err != nil {
			return // Format is stricter about segments (e.g. '%')
		}
		if _, t2, _, err := Parse(u.String()); err != nil || t2 != tenant {
			t.Fatalf("round trip of %q: %v %q", id, err, t2)
		}
	})
}
