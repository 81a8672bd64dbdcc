package local

import (
	"context"
	"crypto/rand"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	operationsv1 "github.com/openkcm/plugin-sdk/proto/plugin/keystore/operations/v1"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keyversions"
)

// The GetKeyVersions stand-in types of plugin-sdk v0.15.0's RPC, shared by every keystore backend (see package
// keyversions; on the v0.15 bump they become operationsv1's generated types).
type (
	GetKeyVersionsRequest  = keyversions.GetKeyVersionsRequest
	KeyVersion             = keyversions.KeyVersion
	GetKeyVersionsResponse = keyversions.GetKeyVersionsResponse
)

// GetKeyVersions lists the key's versions, oldest first. Each version
// reports the key's state (versions are enabled/disabled with their key).
// Errors are those of GetKey.
func (o *Operations) GetKeyVersions(_ context.Context, req *GetKeyVersionsRequest) (*GetKeyVersionsResponse, error) {
	be, inst, id, err := o.params(req.GetParameters())
	if err != nil {
		return nil, err
	}
	r, err := o.load(be, inst, id)
	if err != nil {
		return nil, err
	}
	resp := &GetKeyVersionsResponse{Versions: make([]*KeyVersion, 0, len(r.Versions))}
	for _, v := range r.Versions {
		resp.Versions = append(resp.Versions, &KeyVersion{VersionId: v.ID, CreationTime: timestamppb.New(v.CreatedAt), Status: r.State})
	}
	return resp, nil
}

// RotateKey adds a freshly generated version to a SYSTEM_MANAGED key and
// returns its version ID; new encryptions use it, older versions still
// decrypt. (BYOK keys rotate by importing new material.) Not an RPC.
func (o *Operations) RotateKey(_ context.Context, p *operationsv1.RequestParameters) (string, error) {
	var vid string
	_, err := o.update(p, func(be *backend, inst string, r *keyRecord) error {
		if r.KeyType != operationsv1.KeyType_KEY_TYPE_SYSTEM_MANAGED.String() {
			return status.Errorf(codes.FailedPrecondition, "key %q is %s; rotate BYOK keys by importing new material", r.ID, r.KeyType)
		}
		if r.State != StateEnabled && r.State != StateDisabled {
			return status.Errorf(codes.FailedPrecondition, "key %q is %s", r.ID, r.State)
		}
		m, err := generateMaterial(r.algorithm())
		if err != nil {
			return internalErr("generating key", err)
		}
		if err := o.addVersion(be, inst, r, m); err != nil {
			return err
		}
		vid = r.latest().ID
		return nil
	})
	return vid, err
}

// Encrypt seals plaintext with the latest version of an enabled AES-256 key
// (AES-256-GCM). The ciphertext names the version in its header, so Decrypt
// keeps working after rotation. aad is optional additional data that must be
// given again to Decrypt. Not an RPC: the v0.14 service has no data-plane
// operations; this is the Go API for in-process consumers and tests.
func (o *Operations) Encrypt(ctx context.Context, p *operationsv1.RequestParameters, plaintext, aad []byte) ([]byte, error) {
	be, inst, r, err := o.usableKey(p)
	if err != nil {
		return nil, err
	}
	v := r.latest()
	key, err := o.material(be, inst, r, v)
	if err != nil {
		return nil, err
	}
	gcm, err := newGCM(key)
	if err != nil {
		return nil, internalErr("cipher", err)
	}
	header := encodeHeader(v.ID)
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, internalErr("nonce", err)
	}
	out := append(append([]byte(nil), header...), nonce...)
	return gcm.Seal(out, nonce, plaintext, dataAAD(header, r.ID, aad)), nil
}

// Decrypt opens a ciphertext from Encrypt with the version named in its
// header. The key must be enabled.
func (o *Operations) Decrypt(ctx context.Context, p *operationsv1.RequestParameters, ciphertext, aad []byte) ([]byte, error) {
	be, inst, r, err := o.usableKey(p)
	if err != nil {
		return nil, err
	}
	vid, header, rest, err := parseHeader(ciphertext)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	v := r.version(vid)
	if v == nil {
		return nil, status.Errorf(codes.InvalidArgument, "key %q has no version %q", r.ID, vid)
	}
	key, err := o.material(be, inst, r, v)
	if err != nil {
		return nil, err
	}
	gcm, err := newGCM(key)
	if err != nil {
		return nil, internalErr("cipher", err)
	}
	if len(rest) < gcm.NonceSize() {
		return nil, status.Error(codes.InvalidArgument, "truncated ciphertext")
	}
	pt, err := gcm.Open(nil, rest[:gcm.NonceSize()], rest[gcm.NonceSize():], dataAAD(header, r.ID, aad))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "decryption failed: ciphertext or additional data was modified, or belongs to another key")
	}
	return pt, nil
}

func dataAAD(header []byte, keyID string, aad []byte) []byte {
	out := append(append([]byte(nil), header...), 0)
	out = append(out, keyID...)
	out = append(out, 0)
	return append(out, aad...)
}

func (o *Operations) usableKey(p *operationsv1.RequestParameters) (*backend, string, *keyRecord, error) {
	be, inst, id, err := o.params(p)
	if err != nil {
		return nil, "", nil, err
	}
	r, err := o.load(be, inst, id)
	if err != nil {
		return nil, "", nil, err
	}
	if r.algorithm() != operationsv1.KeyAlgorithm_KEY_ALGORITHM_AES256 {
		return nil, "", nil, status.Errorf(codes.FailedPrecondition, "key %q is %s; Encrypt/Decrypt need an AES-256 key", r.ID, r.Algorithm)
	}
	if r.State != StateEnabled {
		return nil, "", nil, status.Errorf(codes.FailedPrecondition, "key %q is %s", r.ID, r.State)
	}
	if r.latest() == nil {
		return nil, "", nil, internalErr("key has no material", errors.New(r.ID))
	}
	return be, inst, r, nil
}
