package local

import (
	"context"
	"errors"
	"testing"

	configv1 "github.com/openkcm/plugin-sdk/proto/service/common/config/v1"
)

func TestPlatformAccessData(t *testing.T) {
	ctx := context.Background()
	mem := NewOperations()
	if _, err := mem.PlatformAccessData("tenant-acme"); !errors.Is(err, ErrNoSharedSecret) {
		t.Fatalf("in-memory keystore: %v, want ErrNoSharedSecret", err)
	}
	o := NewOperations()
	if _, err := o.Configure(ctx, &configv1.ConfigureRequest{YamlConfiguration: "dir: " + t.TempDir() + "\n"}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.PlatformAccessData(""); err == nil {
		t.Fatal("empty instance accepted")
	}
	ad, err := o.PlatformAccessData(TenantInstanceID("acme"))
	if err != nil {
		t.Fatal(err)
	}
	if ad[FieldInstanceID] != "tenant-acme" || ad[FieldAccessKey] != AccessKey(o.backend().secret, roleKeys, "tenant-acme") {
		t.Fatalf("access data %v is not what CreateKeystore would mint for the instance", ad)
	}
	other, _ := o.PlatformAccessData(TenantInstanceID("globex"))
	if other[FieldAccessKey] == ad[FieldAccessKey] {
		t.Fatal("two tenants share an access key")
	}
}

func TestCiphertextVersion(t *testing.T) {
	if v, err := CiphertextVersion(append(encodeHeader("v7"), 1, 2, 3)); err != nil || v != "v7" {
		t.Fatalf("CiphertextVersion = %q, %v", v, err)
	}
	for _, bad := range [][]byte{nil, []byte("XXXX"), append(encodeHeader("v7")[:len(ciphertextMagic)+1], 'v')} {
		if _, err := CiphertextVersion(bad); err == nil {
			t.Errorf("CiphertextVersion(%q) accepted", bad)
		}
	}
}
