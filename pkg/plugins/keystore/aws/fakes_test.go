package aws

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/moto"
)

// fakeSTS answers both exchanges with fresh credentials and counts calls.
type fakeSTS struct {
	webIdentity, assume atomic.Int64
	lastExternalID      atomic.Value
}

func (f *fakeSTS) creds() *ststypes.Credentials {
	return &ststypes.Credentials{AccessKeyId: sdkaws.String("ASIAFAKE"), SecretAccessKey: sdkaws.String("s"), SessionToken: sdkaws.String("t"), Expiration: sdkaws.Time(time.Now().Add(time.Hour))}
}

func (f *fakeSTS) AssumeRoleWithWebIdentity(_ context.Context, in *sts.AssumeRoleWithWebIdentityInput, _ ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error) {
	f.webIdentity.Add(1)
	return &sts.AssumeRoleWithWebIdentityOutput{Credentials: f.creds(), AssumedRoleUser: &ststypes.AssumedRoleUser{Arn: sdkaws.String("arn:aws:sts::123456789012:assumed-role/p/s"), AssumedRoleId: sdkaws.String("AROA:s")}}, nil
}

func (f *fakeSTS) AssumeRole(_ context.Context, in *sts.AssumeRoleInput, _ ...func(*sts.Options)) (*sts.AssumeRoleOutput, error) {
	f.assume.Add(1)
	f.lastExternalID.Store(sdkaws.ToString(in.ExternalId))
	return &sts.AssumeRoleOutput{Credentials: f.creds(), AssumedRoleUser: &ststypes.AssumedRoleUser{Arn: sdkaws.String("arn:aws:sts::111122223333:assumed-role/r/s"), AssumedRoleId: sdkaws.String("AROA:s")}}, nil
}

func (f *fakeSTS) GetCallerIdentity(context.Context, *sts.GetCallerIdentityInput, ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error) {
	return &sts.GetCallerIdentityOutput{}, nil
}

// fakeKMS is an in-memory KMS with the calls BYOK needs (moto has no import API).
type fakeKMS struct {
	kmsAPI // unimplemented calls panic
	mu     sync.Mutex
	keys   map[string]*kmstypes.KeyMetadata
	token  []byte
	wrap   *rsa.PrivateKey
	// material is the last unwrapped imported key material.
	material []byte
	// imported records the last ImportKeyMaterial input.
	imported *kms.ImportKeyMaterialInput
}

func newFakeKMS() *fakeKMS { return &fakeKMS{keys: map[string]*kmstypes.KeyMetadata{}} }

func (f *fakeKMS) add(arn string, origin kmstypes.OriginType, state kmstypes.KeyState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[arn] = &kmstypes.KeyMetadata{Arn: sdkaws.String(arn), KeyId: sdkaws.String(arn[len(arn)-36:]), Origin: origin, KeyState: state,
		KeySpec: kmstypes.KeySpecSymmetricDefault, KeyUsage: kmstypes.KeyUsageTypeEncryptDecrypt, CreationDate: sdkaws.Time(time.Unix(1700000000, 0))}
}

func (f *fakeKMS) DescribeKey(_ context.Context, in *kms.DescribeKeyInput, _ ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	md, ok := f.keys[sdkaws.ToString(in.KeyId)]
	if !ok {
		return nil, &kmstypes.NotFoundException{Message: sdkaws.String("no such key")}
	}
	cp := *md
	return &kms.DescribeKeyOutput{KeyMetadata: &cp}, nil
}

func (f *fakeKMS) GetParametersForImport(_ context.Context, in *kms.GetParametersForImportInput, _ ...func(*kms.Options)) (*kms.GetParametersForImportOutput, error) {
	if in.WrappingAlgorithm != kmstypes.AlgorithmSpecRsaesOaepSha256 {
		return nil, &kmstypes.UnsupportedOperationException{Message: sdkaws.String("fake supports RSAES_OAEP_SHA_256 only")}
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048) // KMS uses RSA-4096; 2048 keeps the test fast
	if err != nil {
		return nil, err
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	f.wrap, f.token = k, []byte("import-token-bytes")
	return &kms.GetParametersForImportOutput{KeyId: in.KeyId, ImportToken: f.token, PublicKey: der, ParametersValidTo: sdkaws.Time(time.Now().Add(24 * time.Hour))}, nil
}

func (f *fakeKMS) ImportKeyMaterial(_ context.Context, in *kms.ImportKeyMaterialInput, _ ...func(*kms.Options)) (*kms.ImportKeyMaterialOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if string(in.ImportToken) != string(f.token) {
		return nil, &kmstypes.InvalidImportTokenException{Message: sdkaws.String("bad token")}
	}
	m, err := rsa.DecryptOAEP(sha256.New(), nil, f.wrap, in.EncryptedKeyMaterial, nil)
	if err != nil || len(m) != 32 {
		return nil, &kmstypes.IncorrectKeyMaterialException{Message: sdkaws.String("material does not unwrap to 32 bytes")}
	}
	f.imported, f.material = in, m
	f.keys[sdkaws.ToString(in.KeyId)].KeyState = kmstypes.KeyStateEnabled
	return &kms.ImportKeyMaterialOutput{}, nil
}

func (f *fakeKMS) ListKeyRotations(context.Context, *kms.ListKeyRotationsInput, ...func(*kms.Options)) (*kms.ListKeyRotationsOutput, error) {
	return &kms.ListKeyRotationsOutput{}, nil
}

// fakeFactory serves fake STS and the given KMS; kmsFor, if set, builds the KMS client from the real config (for
// tests against an httptest KMS).
func fakeFactory(s *fakeSTS, k kmsAPI) clientFactory {
	f := defaultFactory()
	f.sts = func(sdkaws.Config, string) stsAPI { return s }
	if k != nil {
		f.kms = func(sdkaws.Config, string) kmsAPI { return k }
	}
	return f
}

// unitConfig is a configuration with a platform identity whose token file exists.
func unitConfig(t testing.TB, extra string) *Config {
	t.Helper()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte(moto.FakeJWT("sa", time.Now().Add(time.Hour))), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		t.Setenv(k, "")
	}
	cfg, err := ParseConfig("region: eu-central-1\nwebIdentity: {roleArn: 'arn:aws:iam::123456789012:role/platform', tokenFile: '" + tok + "'}\n" + extra)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func acmeValues(t testing.TB) *structpb.Struct {
	s, err := structpb.NewStruct(map[string]any{"tenant": "acme", "roleArn": "arn:aws:iam::111122223333:role/apeiro-cmk-tenant-acme"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const acmeKey = "arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
