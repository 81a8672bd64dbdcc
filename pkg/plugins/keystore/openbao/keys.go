package openbao

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	bao "github.com/openbao/openbao/api/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keyversions"
)

// Key states as GetKey reports them.
const (
	StateEnabled         = "ENABLED"
	StateDisabled        = "DISABLED"
	StatePendingDeletion = "PENDING_DELETION"
)

// transitKey is what GET <mount>/keys/<name> returns that the plugin uses.
type transitKey struct {
	Name            string
	Type            string
	Latest          int
	MinDecryption   int
	DeletionAllowed bool
	Versions        map[int]time.Time
	// Imported: the material came from ImportKeyMaterial (BYOK); new material is a new imported version.
	Imported bool
	// PendingImport: a BYOK key recorded by CreateKey that has no material (and no transit key) yet.
	PendingImport bool
}

func algorithmOf(t string) operationsv1.KeyAlgorithm {
	switch t {
	case "aes256-gcm96":
		return operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256
	case "rsa-3072":
		return operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072
	case "rsa-4096":
		return operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096
	}
	return operationsv1.KeyAlgorithm_KEY_ALGORITHM_UNSPECIFIED
}

func keyTypeOf(a operationsv1.KeyAlgorithm) (string, bool) {
	switch a {
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256:
		return "aes256-gcm96", true
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA3072:
		return "rsa-3072", true
	case operationsv1.KeyAlgorithm_KEY_ALGORITHM_RSA4096:
		return "rsa-4096", true
	}
	return "", false
}

func checkKeyName(id string) error {
	if !keyRE.MatchString(id) {
		return invalidArg("keyId", "key id %q is not a transit key name ([A-Za-z0-9_.-], at most 128)", trunc(id))
	}
	return nil
}

func intOf(v any) int {
	switch t := v.(type) {
	case json.Number:
		i, _ := t.Int64()
		return int(i)
	case float64:
		return int(t)
	case int:
		return t
	case string:
		i, _ := strconv.Atoi(t)
		return i
	}
	return 0
}

// readKey returns the transit key, or a StatusKeyNotFound error.
func (b *backend) readKey(ctx context.Context, bd *binding, name string) (*transitKey, error) {
	sec, err := b.do(ctx, bd, "reading key "+bd.mount+"/"+name, func(l logical) (*bao.Secret, error) {
		return l.ReadWithContext(ctx, bd.mount+"/keys/"+name)
	})
	if err != nil {
		if e, ok := err.(*Error); ok && e.SDK == nil && e.Code == codes.NotFound {
			return nil, notFound(bd.mount, name)
		}
		return nil, err
	}
	if sec == nil || sec.Data == nil {
		return nil, notFound(bd.mount, name)
	}
	d := sec.Data
	k := &transitKey{Name: name, Versions: map[int]time.Time{}}
	k.Type, _ = d["type"].(string)
	k.Latest = intOf(d["latest_version"])
	k.MinDecryption = intOf(d["min_decryption_version"])
	k.DeletionAllowed, _ = d["deletion_allowed"].(bool)
	k.Imported, _ = d["imported_key"].(bool)
	if vs, ok := d["keys"].(map[string]any); ok {
		for v, raw := range vs {
			n, err := strconv.Atoi(v)
			if err != nil {
				continue
			}
			var t time.Time
			switch x := raw.(type) {
			case map[string]any: // asymmetric keys: {creation_time, public_key, name}
				if s, _ := x["creation_time"].(string); s != "" {
					t, _ = time.Parse(time.RFC3339Nano, s)
				}
			default: // symmetric keys: unix seconds
				t = time.Unix(int64(intOf(x)), 0)
			}
			k.Versions[n] = t
		}
	}
	return k, nil
}

// statusOf is the key's state under the mount state.
func statusOf(st *mountState, k *transitKey) string {
	name := k.Name
	if _, ok := st.Pending[name]; ok {
		return StatePendingDeletion
	}
	if k.PendingImport {
		return StatePendingImport
	}
	if st.disabled(name) {
		return StateDisabled
	}
	return StateEnabled
}

// versions lists the key's usable versions oldest first (from min_decryption_version to latest_version).
func versions(k *transitKey, status string) []*keyversions.KeyVersion {
	nums := make([]int, 0, len(k.Versions))
	for n := range k.Versions {
		if n >= k.MinDecryption {
			nums = append(nums, n)
		}
	}
	sort.Ints(nums)
	out := make([]*keyversions.KeyVersion, 0, len(nums))
	for _, n := range nums {
		out = append(out, &keyversions.KeyVersion{VersionId: fmt.Sprintf("v%d", n), CreationTime: timestamppb.New(k.Versions[n]), Status: status})
	}
	return out
}

// purgeIfDue deletes a key whose deletion window has passed and reports whether it did.
func (b *backend) purgeIfDue(ctx context.Context, bd *binding, st *mountState, name string) (bool, error) {
	due, ok := st.Pending[name]
	if !ok || b.now().Unix() < due {
		return false, nil
	}
	if _, err := b.do(ctx, bd, "deleting key "+bd.mount+"/"+name, func(l logical) (*bao.Secret, error) {
		return l.DeleteWithContext(ctx, bd.mount+"/keys/"+name)
	}); err != nil {
		// A BYOK key deleted before its material arrived has no transit key: only the record goes.
		if e, ok := err.(*Error); !ok || e.Code != codes.NotFound || st.Byok[name] == nil {
			return false, err
		}
	}
	err := b.updateState(ctx, bd, func(s *mountState) error {
		delete(s.Pending, name)
		delete(s.Byok, name)
		s.setDisabled(name, false)
		return nil
	})
	return true, err
}
