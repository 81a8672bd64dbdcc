package openbao

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	bao "github.com/openbao/openbao/api/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	kserrors "github.com/openkcm/plugin-sdk/pkg/plugin/keystore/errors"
	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"
)

// BYOK: the customer's key material enters transit only wrapped under the tenant mount's own wrapping key
// (GET <mount>/wrapping_key, RSA-4096, created by the server on first read), using the mechanism transit expects:
// RSA-OAEP (SHA-256) of an ephemeral AES-256 key followed by AES key wrap with padding (RFC 5649) of the material.
// In CMK's terms that is CKM_RSA_AES_KEY_WRAP with hashFunction SHA256. Material is raw bytes for AES-256 and
// PKCS#8 DER for RSA keys.
//
// Transit creates an imported key in the same call that imports its material (<mount>/keys/<name>/import), so a
// BYOK key exists on the server only after ImportKeyMaterial. Until then the plugin records it in the mount's state
// (state PENDING_IMPORT); later material becomes a new version through <mount>/keys/<name>/import_version.

// Import parameter fields, in the shape OpenKCM CMK reads from GetImportParameters (publicKey, wrappingAlgorithm,
// hashFunction, providerParams, validTo) and sends back to ImportKeyMaterial ({providerParams[, algorithm]}).
const (
	ImportPublicKey         = "publicKey"
	ImportWrappingAlgorithm = "wrappingAlgorithm"
	ImportHashFunction      = "hashFunction"
	ImportProviderParams    = "providerParams"
	ImportValidTo           = "validTo"
	ImportAlgorithm         = "algorithm"

	// WrappingMechanism is transit's import format as CMK's API names it.
	WrappingMechanism = "CKM_RSA_AES_KEY_WRAP"
	// ImportHash is the OAEP hash the plugin announces and passes to transit as hash_function.
	ImportHash = "SHA256"
)

// StatePendingImport is the state of a BYOK key that has no material yet.
const StatePendingImport = "PENDING_IMPORT"

// importValidity is how long import parameters stay usable (as long as AWS KMS import tokens: a customer's offline
// wrapping ceremony may take hours).
const importValidity = 24 * time.Hour

// Bounds on what the import path stores and decodes.
const (
	maxPendingImports       = 256      // BYOK entries per mount state (pending keys and outstanding tokens)
	maxProviderParamsBytes  = 1024     // the providerParams string
	maxWrappedMaterialBytes = 16 << 10 // decoded encrypted_key_material (an RSA-4096 PKCS#8 key wraps to ~3 KiB)
	wrappingKeyBytes        = 512      // RSA-4096: the OAEP head of the wrapped material
)

// byokEntry is what the mount state keeps about a BYOK key while it waits for material or while import parameters
// are outstanding: the transit key type, and the SHA-256 of the single-use import token with its expiry.
type byokEntry struct {
	Type    string `json:"type"`
	Token   string `json:"token,omitempty"` // hex SHA-256 of the token in providerParams
	Expires int64  `json:"exp,omitempty"`   // unix seconds
}

// importParams is the JSON inside providerParams. It names the key and mount it was issued for, so parameters of
// one key (or tenant) cannot import into another; the token makes them single use.
type importParams struct {
	V     int    `json:"v"`
	Mount string `json:"mount"`
	Key   string `json:"key"`
	Type  string `json:"type"`
	Token string `json:"token"`
}

func tokenHash(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

// createBYOK records a BYOK key that waits for its material. One state write: a failure leaves nothing.
func (b *backend) createBYOK(ctx context.Context, bd *binding, name, typ string) (*operationsv1.CreateKeyResponse, error) {
	err := b.updateState(ctx, bd, func(st *mountState) error {
		if _, ok := st.Byok[name]; ok {
			return &Error{Code: codes.AlreadyExists, Field: "id", Msg: fmt.Sprintf("BYOK key %q already exists in mount %s (waiting for key material)", name, bd.mount)}
		}
		if len(st.Byok) >= maxPendingImports {
			return &Error{Code: codes.ResourceExhausted, Field: "id", Msg: fmt.Sprintf("mount %s already has %d BYOK keys waiting for key material; import or delete some first", bd.mount, maxPendingImports)}
		}
		if st.Byok == nil {
			st.Byok = map[string]*byokEntry{}
		}
		st.Byok[name] = &byokEntry{Type: typ}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &operationsv1.CreateKeyResponse{KeyId: name, Status: StatePendingImport}, nil
}

// pendingKey is the key lookup returns for a BYOK key that has no material yet (no versions).
func pendingKey(name string, e *byokEntry) *transitKey {
	return &transitKey{Name: name, Type: e.Type, Versions: map[int]time.Time{}, PendingImport: true}
}

// GetImportParameters returns the tenant mount's wrapping key and a fresh single-use import token for a BYOK key
// (one waiting for material, or an imported key that takes a new version). A newer call replaces older parameters
// of the same key.
func (o *Operations) GetImportParameters(ctx context.Context, req *operationsv1.GetImportParametersRequest) (*operationsv1.GetImportParametersResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	resp, err := b.importParameters(ctx, req)
	return resp, grpcErr(err)
}

func (b *backend) importParameters(ctx context.Context, req *operationsv1.GetImportParametersRequest) (*operationsv1.GetImportParametersResponse, error) {
	bd, st, k, err := b.lookup(ctx, req.GetParameters())
	if err != nil {
		return nil, err
	}
	if _, ok := st.Pending[k.Name]; ok {
		return nil, disabledErr("key %s/%s is pending deletion and takes no key material", bd.mount, k.Name)
	}
	if a := req.GetAlgorithm(); a != operationsv1.KeyAlgorithm_KEY_ALGORITHM_UNSPECIFIED && algorithmOf(k.Type) != a {
		return nil, invalidArg("algorithm", "key %s/%s is %s, not %s", bd.mount, k.Name, algorithmOf(k.Type), a)
	}
	if !k.PendingImport && !k.Imported {
		return nil, &Error{Code: codes.FailedPrecondition, Field: "keyId",
			Msg: fmt.Sprintf("key %s/%s was generated by OpenBao; only BYOK keys take imported key material", bd.mount, k.Name)}
	}
	pub, err := b.wrappingKey(ctx, bd)
	if err != nil {
		return nil, err
	}
	rnd := make([]byte, 32)
	if _, err := rand.Read(rnd); err != nil {
		return nil, &Error{Code: codes.Internal, Msg: "generating an import token: " + err.Error()}
	}
	tok := hex.EncodeToString(rnd)
	exp := b.now().Add(importValidity).UTC().Truncate(time.Second)
	if err := b.updateState(ctx, bd, func(st *mountState) error {
		e := st.Byok[k.Name]
		if e == nil {
			if len(st.Byok) >= maxPendingImports {
				return &Error{Code: codes.ResourceExhausted, Field: "keyId", Msg: fmt.Sprintf("mount %s has %d outstanding imports; complete some first", bd.mount, maxPendingImports)}
			}
			if !k.Imported {
				// The pending BYOK record disappeared between the reads (deleted concurrently).
				return notFound(bd.mount, k.Name)
			}
			if st.Byok == nil {
				st.Byok = map[string]*byokEntry{}
			}
			e = &byokEntry{Type: k.Type}
			st.Byok[k.Name] = e
		}
		e.Token, e.Expires = tokenHash(tok), exp.Unix()
		return nil
	}); err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(importParams{V: 1, Mount: bd.mount, Key: k.Name, Type: k.Type, Token: tok})
	s, err := structpb.NewStruct(map[string]any{
		ImportPublicKey:         pub,
		ImportWrappingAlgorithm: WrappingMechanism,
		ImportHashFunction:      ImportHash,
		ImportProviderParams:    string(raw),
		ImportValidTo:           exp.Format(time.RFC3339),
		ImportAlgorithm:         algorithmOf(k.Type).String(),
	})
	if err != nil {
		return nil, &Error{Code: codes.Internal, Msg: "encoding import parameters: " + err.Error()}
	}
	return &operationsv1.GetImportParametersResponse{KeyId: k.Name, ImportParameters: s}, nil
}

// wrappingKey reads the mount's transit wrapping key and checks that it is the RSA-4096 key the announced mechanism
// needs (a different server answer must not make customers wrap for a key the import cannot use).
func (b *backend) wrappingKey(ctx context.Context, bd *binding) (string, error) {
	// The first read of a mount's wrapping key makes the server generate it (RSA-4096: seconds on a busy node, which
	// can exceed callTimeout). The generation runs to completion on the server even when the client gives up, so a
	// per-request timeout is retried while the caller's own deadline allows.
	var sec *bao.Secret
	var err error
	for attempt := 0; attempt < 6; attempt++ {
		sec, err = b.do(ctx, bd, "reading the wrapping key of "+bd.mount, func(l logical) (*bao.Secret, error) {
			return l.ReadWithContext(ctx, bd.mount+"/wrapping_key")
		})
		var e *Error
		if err == nil || ctx.Err() != nil || !errors.As(err, &e) || e.Code != codes.DeadlineExceeded {
			break
		}
	}
	if err != nil {
		return "", err
	}
	var pemStr string
	if sec != nil && sec.Data != nil {
		pemStr, _ = sec.Data["public_key"].(string)
	}
	if err := checkWrappingKey(pemStr); err != nil {
		return "", &Error{Code: codes.Internal, Msg: fmt.Sprintf("wrapping key of %s: %v", bd.mount, err)}
	}
	return pemStr, nil
}

func checkWrappingKey(pemStr string) error {
	blk, _ := pem.Decode([]byte(pemStr))
	if blk == nil {
		return errors.New("OpenBao returned no PEM public key")
	}
	pk, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return fmt.Errorf("not a public key: %w", err)
	}
	rk, ok := pk.(*rsa.PublicKey)
	if !ok || rk.Size() != wrappingKeyBytes {
		return errors.New("not an RSA-4096 key")
	}
	return nil
}

// parseProviderParams decodes the providerParams string ImportKeyMaterial receives.
func parseProviderParams(s *structpb.Struct) (*importParams, error) {
	v, ok := s.GetFields()[ImportProviderParams]
	if !ok {
		return nil, invalidArg(ImportProviderParams, "import_parameters.providerParams is required (from GetImportParameters)")
	}
	raw, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		return nil, invalidArg(ImportProviderParams, "import_parameters.providerParams must be the string GetImportParameters returned")
	}
	if len(raw.StringValue) > maxProviderParamsBytes {
		return nil, invalidArg(ImportProviderParams, "import_parameters.providerParams is larger than %d bytes", maxProviderParamsBytes)
	}
	dec := json.NewDecoder(strings.NewReader(raw.StringValue))
	dec.DisallowUnknownFields()
	var p importParams
	if err := dec.Decode(&p); err != nil || p.V != 1 || len(p.Token) != 64 || p.Key == "" || p.Mount == "" {
		return nil, invalidArg(ImportProviderParams, "import_parameters.providerParams was not issued by this keystore")
	}
	if _, err := hex.DecodeString(p.Token); err != nil {
		return nil, invalidArg(ImportProviderParams, "import_parameters.providerParams was not issued by this keystore")
	}
	return &p, nil
}

// decodeWrappedMaterial decodes encrypted_key_material (base64 in any of its four alphabets) and checks it is long
// enough to hold the RSA-4096 OAEP head and a wrapped key.
func decodeWrappedMaterial(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, invalidArg("encryptedKeyMaterial", "encrypted_key_material is required")
	}
	if len(s) > base64.StdEncoding.EncodedLen(maxWrappedMaterialBytes) {
		return nil, invalidArg("encryptedKeyMaterial", "encrypted_key_material is larger than %d bytes", maxWrappedMaterialBytes)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(s); err == nil {
			// RFC 5649 output is a multiple of 8 bytes and at least 16.
			if body := len(raw) - wrappingKeyBytes; body < 16 || body%8 != 0 {
				return nil, invalidArg("encryptedKeyMaterial", "encrypted_key_material is not %s output for an RSA-4096 wrapping key (%d bytes)", WrappingMechanism, len(raw))
			}
			return raw, nil
		}
	}
	return nil, invalidArg("encryptedKeyMaterial", "encrypted_key_material must be base64 of the wrapped key material")
}

// ImportKeyMaterial imports wrapped material into a BYOK key: the first material creates the transit key
// (<mount>/keys/<name>/import), later material adds a version (import_version). The token is consumed before the
// call and given back if OpenBao refuses the material, so a bad upload can be retried with the same parameters and
// a replay of used parameters is refused.
func (o *Operations) ImportKeyMaterial(ctx context.Context, req *operationsv1.ImportKeyMaterialRequest) (*operationsv1.ImportKeyMaterialResponse, error) {
	b := o.backend()
	ctx, cancel := b.withBudget(ctx)
	defer cancel()
	if err := b.importMaterial(ctx, req); err != nil {
		return nil, grpcErr(err)
	}
	return &operationsv1.ImportKeyMaterialResponse{}, nil
}

func (b *backend) importMaterial(ctx context.Context, req *operationsv1.ImportKeyMaterialRequest) error {
	pp, err := parseProviderParams(req.GetImportParameters())
	if err != nil {
		return err
	}
	material, err := decodeWrappedMaterial(req.GetEncryptedKeyMaterial())
	if err != nil {
		return err
	}
	bd, name, err := b.keyRef(req.GetParameters())
	if err != nil {
		return err
	}
	if pp.Mount != bd.mount || pp.Key != name {
		return invalidArg(ImportProviderParams, "import parameters were issued for key %s/%s, not %s/%s", trunc(pp.Mount), trunc(pp.Key), bd.mount, name)
	}
	if a := str(req.GetImportParameters(), ImportAlgorithm); a != "" && a != algorithmOf(pp.Type).String() {
		return invalidArg(ImportAlgorithm, "import parameters are for a %s key, not %s", algorithmOf(pp.Type), trunc(a))
	}
	var entry byokEntry
	if err := b.updateState(ctx, bd, func(st *mountState) error {
		if _, ok := st.Pending[name]; ok {
			return disabledErr("key %s/%s is pending deletion and takes no key material", bd.mount, name)
		}
		e := st.Byok[name]
		if e == nil || e.Token == "" || subtle.ConstantTimeCompare([]byte(e.Token), []byte(tokenHash(pp.Token))) != 1 {
			return &Error{Code: codes.FailedPrecondition, Field: ImportProviderParams,
				Msg: fmt.Sprintf("import parameters of %s/%s were already used or replaced by newer ones; call GetImportParameters again", bd.mount, name)}
		}
		if b.now().Unix() >= e.Expires {
			e.Token, e.Expires = "", 0
			return &Error{Code: codes.FailedPrecondition, Field: ImportProviderParams,
				Msg: fmt.Sprintf("import parameters of %s/%s have expired; call GetImportParameters again", bd.mount, name)}
		}
		entry = *e
		e.Token, e.Expires = "", 0
		return nil
	}); err != nil {
		return err
	}
	// From here the token is consumed; give it back unless the import succeeds (or the record is gone).
	restore := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = b.updateState(rctx, bd, func(st *mountState) error {
			if e := st.Byok[name]; e != nil && e.Token == "" {
				e.Token, e.Expires = entry.Token, entry.Expires
			}
			return nil
		})
	}
	k, err := b.readKey(ctx, bd, name)
	path := bd.mount + "/keys/" + name + "/import"
	data := map[string]any{"ciphertext": base64.StdEncoding.EncodeToString(material), "hash_function": ImportHash}
	switch e := (*Error)(nil); {
	case err == nil && !k.Imported:
		restore()
		return &Error{Code: codes.FailedPrecondition, Field: "keyId", Msg: fmt.Sprintf("key %s/%s was generated by OpenBao; only BYOK keys take imported key material", bd.mount, name)}
	case err == nil:
		path += "_version"
	case errors.As(err, &e) && e.SDK == kserrors.StatusKeyNotFound:
		data["type"] = entry.Type
		data["exportable"] = false
		data["allow_plaintext_backup"] = false
	default:
		restore()
		return err
	}
	if _, err := b.do(ctx, bd, "importing key material into "+bd.mount+"/"+name, func(l logical) (*bao.Secret, error) {
		return l.WriteWithContext(ctx, path, data)
	}); err != nil {
		restore()
		return importErr(bd, name, err)
	}
	// The key now exists on the server; the pending record has served its purpose. If this write fails the material
	// is still in and the call succeeded: a stale record is harmless (the transit key wins in lookup).
	_ = b.updateState(ctx, bd, func(st *mountState) error {
		if e := st.Byok[name]; e != nil && e.Token == "" {
			delete(st.Byok, name)
		}
		return nil
	})
	return nil
}

// importErr classifies a refused import. Transit answers a material that does not unwrap (wrong wrapping key,
// corrupted bytes, wrong size for the key type) with a bare error (HTTP 500 or 400): the caller sent it, so it is
// InvalidArgument with transit's reason; an unavailable or refusing server keeps its own status.
func importErr(bd *binding, name string, err error) error {
	var e *Error
	if !errors.As(err, &e) || (e.Code != codes.Unknown && e.Code != codes.InvalidArgument) || e.SDK != nil {
		return err
	}
	return &Error{Code: codes.InvalidArgument, Field: "encryptedKeyMaterial",
		Msg: fmt.Sprintf("OpenBao refused the key material for %s/%s (it must be %s-wrapped under this key's import parameters): %s", bd.mount, name, WrappingMechanism, e.Msg)}
}
