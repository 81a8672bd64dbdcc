package moto_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/apeirora/apeiro-cmk/internal/testpeers/moto"
)

// TestIRSAChain proves the helper's environment: web identity → platform role → tenant role → KMS, all signed and
// checked by moto, and that static dummy keys are refused once setup is over.
func TestIRSAChain(t *testing.T) {
	srv := moto.Start(t, moto.Options{Tenants: []string{"acme"}})
	srv.Setenv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatalf("web identity: %v\n%s", err, srv.Logs())
	}
	if creds.Source != stscreds.WebIdentityProviderName {
		t.Fatalf("credential source = %q, want web identity", creds.Source)
	}
	id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil || !strings.Contains(aws.ToString(id.Arn), moto.PlatformRoleName) {
		t.Fatalf("platform identity = %v, %v", id, err)
	}

	tenantCfg := cfg.Copy()
	tenantCfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), srv.TenantRoleARN("acme"),
		func(o *stscreds.AssumeRoleOptions) { o.ExternalID = aws.String("acme") }))
	k := kms.NewFromConfig(tenantCfg)
	key, err := k.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatalf("CreateKey as tenant: %v", err)
	}
	if !strings.Contains(aws.ToString(key.KeyMetadata.Arn), ":"+srv.TenantAccount("acme")+":") {
		t.Fatalf("key %s not in the tenant's account %s", aws.ToString(key.KeyMetadata.Arn), srv.TenantAccount("acme"))
	}

	static := cfg.Copy()
	static.Credentials = credentials.NewStaticCredentialsProvider("AKIAFAKEFAKEFAKE", "fake", "")
	if _, err := kms.NewFromConfig(static).CreateKey(ctx, &kms.CreateKeyInput{}); err == nil {
		t.Fatal("CreateKey with static dummy keys succeeded; moto is not enforcing signatures")
	}
}
