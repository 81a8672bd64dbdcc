package dod

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/status"

	identity_managementv1 "github.com/openkcm/plugin-sdk/proto/plugin/identity_management/v1"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
	notificationv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"
	systeminformationv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/builtin"
	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
	"github.com/apeirora/apeiro-cmk/profiles"
	"github.com/apeirora/apeiro-cmk/profiles/apeiro-profile/profiletest"
)

// TestDoDApeiroProfile: "a valid config.yaml profile named apeiro-profile is created to load this specific set of
// plugins at runtime". The embedded profiles/apeiro-profile/config.yaml is loaded through the real plugin-sdk
// catalog (as CMK and the webhook server load it) and one RPC of every plugin type is called. The contract suites
// and the CMK-compatibility suite of every plugin run in `make test`, in both load modes.
func TestDoDApeiroProfile(t *testing.T) {
	r := item(t, "apeiro-profile loads the Apeiro plugin set at runtime")
	t.Setenv("APEIRO_LOCAL_KEYSTORE_DIR", filepath.Join(t.TempDir(), "keystore"))
	entries, err := host.ParseProfile(profiles.ApeiroBuiltin)
	if err != nil {
		t.Fatalf("parsing profiles/apeiro-profile/config.yaml: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := host.Load(ctx, host.Config{Plugins: entries, BuiltIns: builtin.All(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("loading the profile through the catalog: %v", err)
	}
	defer func() { _ = p.Close() }()
	var loaded []string
	for _, i := range p.Info() {
		loaded = append(loaded, i.Type()+"/"+i.Name())
	}
	slices.Sort(loaded)
	r.Evidence("%d plugins loaded (%s)", len(loaded), strings.Join(loaded, ", "))

	// Keystores: every operations plugin answers GetKey for an unknown key with a gRPC status of its own.
	for _, name := range p.KeystoreNames() {
		ops, err := p.KeyOperations(name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ops.GetKey(ctx, &operationsv1.GetKeyRequest{Parameters: &operationsv1.RequestParameters{KeyId: "dod-no-such-key"}})
		st, _ := status.FromError(err)
		if err == nil || st.Code().String() == "Unknown" {
			t.Errorf("keystore %s: GetKey of a missing key answered %v", name, err)
		}
		r.Evidence("keystore %s GetKey(missing) → %s", name, st.Code())
	}

	idm, err := p.Identity()
	if err != nil {
		t.Fatal(err)
	}
	groups, err := idm.GetAllGroups(ctx, &identity_managementv1.GetAllGroupsRequest{})
	if err != nil {
		t.Fatalf("identity GetAllGroups: %v", err)
	}
	r.Evidence("identity GetAllGroups → %d groups", len(groups.GetGroups()))

	ci, err := p.CertificateIssuer()
	if err != nil {
		t.Fatal(err)
	}
	leaf := profiletest.IssueCertificate(ctx, t, ci, "dod-tenant", "eu-central")
	var uris []string
	for _, u := range leaf.URIs {
		uris = append(uris, u.String())
	}
	r.Evidence("certificate issuer GetCertificate(RSA-3072) → CN %q, URI SAN %s", leaf.Subject.CommonName, strings.Join(uris, " "))

	sis, err := p.SystemInformation()
	if err != nil {
		t.Fatal(err)
	}
	region, err := sis.Get(ctx, &systeminformationv1.GetRequest{Id: "eu-central", Type: "region"})
	if err != nil {
		t.Fatalf("system information Get(eu-central, region): %v", err)
	}
	r.Evidence("system information Get(eu-central, region) → %v", region.GetMetadata())

	n, err := p.Notification()
	if err != nil {
		t.Fatal(err)
	}
	sent, err := n.SendNotification(ctx, &notificationv1.SendNotificationRequest{
		NotificationType: notificationv1.NotificationType_NOTIFICATION_TYPE_TEXT,
		Recipients:       []string{"dod"}, Subject: "apeiro-cmk DoD", Body: "profile check",
	})
	if err != nil {
		t.Fatalf("notification SendNotification: %v", err)
	}
	// Without an Alertmanager on this machine the plugin answers success=false with the reason: an answer, as CMK
	// expects it (a gRPC error would make CMK treat the plugin as broken).
	r.Evidence("notification SendNotification → success=%v", sent.GetSuccess())
}
