package apeiro

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/apeirora/apeiro-cmk/pkg/netguard"
)

// directory is the narrow view of the Platform Mesh directory the plugin uses: exactly the Keycloak Admin REST
// calls it makes. Implementations return errNotFound (wrapped) for a missing realm, user or group.
type directory interface {
	User(ctx context.Context, realm, id string) (*kcUser, error)
	Groups(ctx context.Context, realm string) ([]kcGroup, error)
	GroupMembers(ctx context.Context, realm, groupID string) ([]kcUser, error)
	UserGroups(ctx context.Context, realm, userID string) ([]kcGroup, error)
}

var (
	errNotFound    = errors.New("not found")
	errCredentials = errors.New("the directory refused the plugin's credentials")
)

// kcUser is the part of Keycloak's UserRepresentation the plugin reads.
type kcUser struct {
	ID        string `json:"id"`
	Username  string `json:"username"`
	FirstName string `json:"firstName"`
	LastName  string `json:"lastName"`
	Email     string `json:"email"`
	Enabled   *bool  `json:"enabled"`
}

// kcGroup is the part of Keycloak's GroupRepresentation the plugin reads.
type kcGroup struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	Path          string    `json:"path"`
	SubGroupCount int       `json:"subGroupCount"`
	SubGroups     []kcGroup `json:"subGroups"`
}

// maxGroupDepth bounds how deep subgroups are followed.
const maxGroupDepth = 5

// Paging: Keycloak lists with first/max; the plugin reads pages of pageSize up to maxListed entries, so a huge
// realm cannot hold a call (or memory) unbounded.
const (
	pageSize  = 100
	maxListed = 5000
)

// keycloak calls the Keycloak Admin REST API (/admin/realms/{realm}/...) with a client-credentials token.
type keycloak struct {
	base   string
	client *http.Client
	tokens oauth2.TokenSource
}

func newKeycloak(s *settings) *keycloak {
	hc := netguard.NewClient(s.clientOpts)
	cc := clientcredentials.Config{ClientID: s.clientID, ClientSecret: s.clientSecret, TokenURL: s.tokenURL, AuthStyle: oauth2.AuthStyleInHeader}
	// The token source keeps the token until shortly before it expires and uses the netguard client.
	ts := cc.TokenSource(context.WithValue(context.Background(), oauth2.HTTPClient, hc))
	return &keycloak{base: s.base.String(), client: hc, tokens: ts}
}

func (k *keycloak) get(ctx context.Context, realm, path string, q url.Values, out any) error {
	tok, err := k.tokens.Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && (re.Response.StatusCode == http.StatusUnauthorized || re.Response.StatusCode == http.StatusBadRequest) {
			return fmt.Errorf("%w (token endpoint answered %d)", errCredentials, re.Response.StatusCode)
		}
		return fmt.Errorf("obtaining a directory token: %w", err)
	}
	u := k.base + "/admin/realms/" + url.PathEscape(realm) + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	tok.SetAuthHeader(req)
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("directory request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading directory response: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return errNotFound
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w (HTTP %d)", errCredentials, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("directory answered HTTP %d", resp.StatusCode)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decoding directory response: %w", err)
	}
	return nil
}

func (k *keycloak) User(ctx context.Context, realm, id string) (*kcUser, error) {
	var u kcUser
	if err := k.get(ctx, realm, "/users/"+url.PathEscape(id), nil, &u); err != nil {
		return nil, err
	}
	if u.ID == "" {
		return nil, errors.New("directory returned a user without id")
	}
	return &u, nil
}

// Groups lists the realm's groups with their subgroups flattened: a role group may sit under a parent such as
// /workspaces. Keycloak (since 23) lists top-level groups with subGroupCount but without their subGroups, which come
// from GET /groups/{id}/children; subgroups a response does include are used as they are.
func (k *keycloak) Groups(ctx context.Context, realm string) ([]kcGroup, error) {
	top, err := list[kcGroup](ctx, k, realm, "/groups", url.Values{"briefRepresentation": {"true"}})
	if err != nil {
		return nil, err
	}
	var out []kcGroup
	var walk func([]kcGroup, int) error
	walk = func(gs []kcGroup, depth int) error {
		for _, g := range gs {
			if len(out) >= maxListed {
				return nil
			}
			sub := g.SubGroups
			g.SubGroups = nil
			out = append(out, g)
			if depth >= maxGroupDepth {
				continue
			}
			if len(sub) == 0 && g.SubGroupCount > 0 {
				if sub, err = list[kcGroup](ctx, k, realm, "/groups/"+url.PathEscape(g.ID)+"/children", url.Values{"briefRepresentation": {"true"}}); err != nil {
					return err
				}
			}
			if err := walk(sub, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(top, 0); err != nil {
		return nil, err
	}
	return out, nil
}

func (k *keycloak) GroupMembers(ctx context.Context, realm, groupID string) ([]kcUser, error) {
	return list[kcUser](ctx, k, realm, "/groups/"+url.PathEscape(groupID)+"/members", url.Values{"briefRepresentation": {"true"}})
}

func (k *keycloak) UserGroups(ctx context.Context, realm, userID string) ([]kcGroup, error) {
	return list[kcGroup](ctx, k, realm, "/users/"+url.PathEscape(userID)+"/groups", url.Values{"briefRepresentation": {"true"}})
}

func list[T any](ctx context.Context, k *keycloak, realm, path string, q url.Values) ([]T, error) {
	var out []T
	for first := 0; first < maxListed; first += pageSize {
		qq := url.Values{}
		for key, v := range q {
			qq[key] = v
		}
		qq.Set("first", strconv.Itoa(first))
		qq.Set("max", strconv.Itoa(pageSize))
		var page []T
		if err := k.get(ctx, realm, path, qq, &page); err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < pageSize {
			break
		}
	}
	return out, nil
}

// displayName is "First Last", else the username.
func (u *kcUser) displayName() string {
	if n := strings.TrimSpace(u.FirstName + " " + u.LastName); n != "" {
		return n
	}
	return u.Username
}
