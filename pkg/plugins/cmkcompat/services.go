package cmkcompat

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	certificate_issuerv1 "github.com/openkcm/plugin-sdk/proto/plugin/certificate_issuer/v1"
	idmv1 "github.com/openkcm/plugin-sdk/proto/plugin/identity_management/v1"
	notificationv1 "github.com/openkcm/plugin-sdk/proto/plugin/notification/v1"
	sisv1 "github.com/openkcm/plugin-sdk/proto/plugin/systeminformation/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/host"
)

// Services names what RunServices expects the loaded non-keystore plugins to
// know. A zero field skips that plugin type; a loaded plugin whose field is
// zero still gets the calls whose outcome does not depend on data.
type Services struct {
	// AuthContext is the business user's auth context CMK forwards to the
	// identity plugin (may be nil).
	AuthContext map[string]string
	// Group is an IAM group name known to the identity plugin, and Member
	// the ID of a user in it.
	Group, Member string
	// Systems are (type, id) pairs the system-information plugin must answer
	// with metadata, as CMK refreshes its systems.
	Systems []System
	// Locality is the certificate locality CMK requests (a region).
	Locality string
}

// System is one system CMK refreshes: Get(id=Identifier, type=Type).
type System struct{ Type, ID string }

// RunServices drives every loaded identity, certificate-issuer,
// system-information and notification plugin with the requests CMK's
// managers send.
func RunServices(t *testing.T, p *host.Plugins, s Services) {
	t.Helper()
	if id, err := p.Identity(); err == nil {
		t.Run("identity", func(t *testing.T) {
			ctx := ctxFor(t)
			ac := &idmv1.AuthContext{Data: s.AuthContext}
			if _, err := id.GetGroup(ctx, &idmv1.GetGroupRequest{GroupName: "cmkcompat-no-such-group", AuthContext: ac}); status.Code(err) != codes.NotFound {
				t.Fatalf("GetGroup(unknown) = %v; CMK reports a missing IAM group on NotFound", err)
			}
			if _, err := id.GetAllGroups(ctx, &idmv1.GetAllGroupsRequest{AuthContext: ac}); err != nil {
				t.Fatalf("GetAllGroups: %v", err)
			}
			if s.Group == "" {
				return
			}
			g, err := id.GetGroup(ctx, &idmv1.GetGroupRequest{GroupName: s.Group, AuthContext: ac})
			if err != nil || g.GetGroup().GetId() == "" {
				t.Fatalf("GetGroup(%q) by name = %v, %v", s.Group, g, err)
			}
			users, err := id.GetUsersForGroup(ctx, &idmv1.GetUsersForGroupRequest{GroupId: g.GetGroup().GetId(), AuthContext: ac})
			if err != nil {
				t.Fatalf("GetUsersForGroup(%q): %v", g.GetGroup().GetId(), err)
			}
			if s.Member == "" {
				return
			}
			if !slices.ContainsFunc(users.GetUsers(), func(u *idmv1.User) bool { return u.GetId() == s.Member }) {
				t.Fatalf("GetUsersForGroup(%q) = %v; want member %q", s.Group, users.GetUsers(), s.Member)
			}
			groups, err := id.GetGroupsForUser(ctx, &idmv1.GetGroupsForUserRequest{UserId: s.Member, AuthContext: ac})
			if err != nil || !slices.ContainsFunc(groups.GetGroups(), func(x *idmv1.Group) bool { return x.GetName() == s.Group }) {
				t.Fatalf("GetGroupsForUser(%q) = %v, %v; want %q", s.Member, groups, err, s.Group)
			}
			if u, err := id.GetUser(ctx, &idmv1.GetUserRequest{UserId: s.Member, AuthContext: ac}); err != nil || u.GetUser().GetId() != s.Member {
				t.Fatalf("GetUser(%q) = %v, %v", s.Member, u, err)
			}
		})
	} else if !errors.Is(err, host.ErrNotConfigured) {
		t.Fatalf("identity: %v", err)
	}

	if ci, err := p.CertificateIssuer(); err == nil {
		t.Run("certificate issuer", func(t *testing.T) {
			ctx := ctxFor(t)
			key, err := rsa.GenerateKey(rand.Reader, 3072)
			if err != nil {
				t.Fatal(err)
			}
			keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
			var loc []string
			if s.Locality != "" {
				loc = []string{s.Locality}
			}
			resp, err := ci.GetCertificate(ctx, &certificate_issuerv1.GetCertificateRequest{
				CommonName: "cmkcompat-tenant-" + randHex(4), Locality: loc,
				Validity:   &certificate_issuerv1.GetCertificateValidity{Value: 30, Type: certificate_issuerv1.ValidityType_VALIDITY_TYPE_DAYS},
				PrivateKey: &certificate_issuerv1.PrivateKey{Data: keyPEM},
			})
			if err != nil {
				t.Fatalf("GetCertificate with an RSA-3072 PKCS#1 key: %v", err)
			}
			// CMK decodes the chain and picks the certificate whose public key
			// is the one of the private key it sent.
			rest := []byte(resp.GetCertificateChain())
			found := false
			for {
				var block *pem.Block
				block, rest = pem.Decode(rest)
				if block == nil {
					break
				}
				if block.Type != "CERTIFICATE" {
					continue
				}
				c, err := x509.ParseCertificate(block.Bytes)
				if err != nil {
					t.Fatalf("certificate chain: %v", err)
				}
				if pub, ok := c.PublicKey.(*rsa.PublicKey); ok && pub.N.Cmp(key.N) == 0 && pub.E == key.E {
					found = true
				}
			}
			if !found {
				t.Fatal("no certificate in the chain carries the requested key; CMK fails with ErrCertificatePublicKey")
			}
		})
	} else if !errors.Is(err, host.ErrNotConfigured) {
		t.Fatalf("certificate issuer: %v", err)
	}

	if sis, err := p.SystemInformation(); err == nil {
		t.Run("system information", func(t *testing.T) {
			ctx := ctxFor(t)
			for _, sys := range s.Systems {
				resp, err := sis.Get(ctx, &sisv1.GetRequest{Id: sys.ID, Type: sys.Type})
				if err != nil || len(resp.GetMetadata()) == 0 {
					t.Fatalf("Get(id=%q, type=%q) = %v, %v; CMK refreshes systems with it and needs metadata", sys.ID, sys.Type, resp, err)
				}
			}
			if _, err := sis.Get(ctx, &sisv1.GetRequest{Id: "cmkcompat-no-such-system", Type: "account"}); status.Code(err) != codes.NotFound {
				t.Fatalf("Get(unknown system) = %v; want NotFound (CMK only logs it)", err)
			}
		})
	} else if !errors.Is(err, host.ErrNotConfigured) {
		t.Fatalf("system information: %v", err)
	}

	if n, err := p.Notification(); err == nil {
		t.Run("notification", func(t *testing.T) {
			resp, err := n.SendNotification(ctxFor(t), &notificationv1.SendNotificationRequest{
				NotificationType: notificationv1.NotificationType_NOTIFICATION_TYPE_EMAIL,
				Recipients:       []string{"approver@example.org"}, Subject: "Key approval requested", Body: "<p>cmkcompat</p>",
			})
			if err != nil {
				t.Fatalf("SendNotification(EMAIL): %v", err)
			}
			if !resp.GetSuccess() && resp.GetMessage() == "" {
				t.Fatal("success=false needs a message")
			}
		})
	} else if !errors.Is(err, host.ErrNotConfigured) {
		t.Fatalf("notification: %v", err)
	}
}
