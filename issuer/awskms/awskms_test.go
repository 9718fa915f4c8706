package awskms_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/issuer/awskms"
	"github.com/mcpsts/mcpsts/issuer/keystoretest"
)

// kmsClient is the real SDK client, pointed at the fake over TLS.
func kmsClient(f *fakeKMS, secret string) *kms.Client {
	cfg := aws.Config{
		Region:      fakeRegion,
		Credentials: credentials.NewStaticCredentialsProvider(f.creds.AccessKeyID, secret, ""),
		HTTPClient:  f.srv.Client(),
		Retryer:     func() aws.Retryer { return retry.AddWithMaxAttempts(retry.NewStandard(), 1) },
	}
	return kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(f.srv.URL) })
}

func TestMintWithKMSKey(t *testing.T) {
	ctx := context.Background()
	fake := newFakeKMS(t)
	arn := fake.addKey(t, "1234abcd-12ab-34cd-56ef-1234567890ab")
	backend, err := awskms.New(kmsClient(fake, fake.creds.SecretAccessKey))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := backend.Record(ctx, arn)
	if err != nil {
		t.Fatal(err)
	}
	store := keystoretest.NewMemory()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	iss, err := issuer.New(issuer.Config{
		Issuer: "https://sts.example.com", Store: store, Backends: []issuer.Backend{backend},
		Clock: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	if added, err := iss.Enroll(ctx, rec); err != nil || !added {
		t.Fatalf("Enroll = %v, %v", added, err)
	}
	if added, _ := iss.Enroll(ctx, rec); added {
		t.Fatal("enrolling the same key twice added it twice")
	}
	if err := iss.Start(ctx); err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Mint(ctx, issuer.Grant{Subject: "agent", Audience: "https://mcp.example.com/mcp", ClientID: "agent", Scopes: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	if tok.KeyID != rec.ID || fake.calls["Sign"] != 1 {
		t.Fatalf("kid %s (want %s), %d Sign calls", tok.KeyID, rec.ID, fake.calls["Sign"])
	}

	rr := httptest.NewRecorder()
	iss.JWKSHandler().ServeHTTP(rr, httptest.NewRequest("GET", "/", nil))
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(rr.Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	parsed, err := josejwt.ParseSigned(tok.Raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var claims josejwt.Claims
	if err := parsed.Claims(set.Key(tok.KeyID)[0].Key, &claims); err != nil {
		t.Fatalf("KMS-signed token does not verify against the JWKS: %v", err)
	}

	// A second KMS key enrolled later is pending: the first keeps signing.
	arn2 := fake.addKey(t, "second")
	rec2, _ := backend.Record(ctx, arn2)
	if added, err := iss.Enroll(ctx, rec2); err != nil || !added {
		t.Fatal(err)
	}
	iss.Refresh(ctx)
	if tok, _ := iss.Mint(ctx, issuer.Grant{Subject: "a", Audience: "https://m.example", ClientID: "c"}); tok.KeyID != rec.ID {
		t.Fatal("a newly enrolled KMS key signed before PublishLead")
	}
	if _, err := iss.Rotate(ctx, true); err == nil {
		t.Fatal("Rotate without local keys succeeded")
	}
}

func TestKMSFailures(t *testing.T) {
	ctx := context.Background()
	fake := newFakeKMS(t)
	arn := fake.addKey(t, "k1")

	t.Run("wrong secret is refused by SigV4", func(t *testing.T) {
		b, _ := awskms.New(kmsClient(fake, "wrong-secret"))
		_, err := b.Record(ctx, arn)
		if err == nil || !strings.Contains(err.Error(), "InvalidSignatureException") {
			t.Fatalf("Record = %v, want InvalidSignatureException", err)
		}
		if strings.Contains(err.Error(), "wrong-secret") {
			t.Fatal("error leaks the secret")
		}
	})
	b, _ := awskms.New(kmsClient(fake, fake.creds.SecretAccessKey))
	rec, err := b.Record(ctx, arn)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("unknown key", func(t *testing.T) {
		if _, err := b.Record(ctx, "arn:aws:kms:eu-west-1:111122223333:key/none"); err == nil || !strings.Contains(err.Error(), "NotFoundException") {
			t.Fatalf("Record = %v", err)
		}
	})
	t.Run("wrong key spec", func(t *testing.T) {
		other := fake.addKey(t, "rsa")
		fake.mu.Lock()
		fake.spec[other] = "RSA_2048"
		fake.mu.Unlock()
		if _, err := b.Record(ctx, other); err == nil || !strings.Contains(err.Error(), "want ECC_NIST_P256") {
			t.Fatalf("Record = %v", err)
		}
	})
	t.Run("signature by another key is rejected", func(t *testing.T) {
		s, err := b.Open(ctx, rec)
		if err != nil {
			t.Fatal(err)
		}
		evil, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		fake.mu.Lock()
		fake.evil = evil
		fake.mu.Unlock()
		defer func() { fake.mu.Lock(); fake.evil = nil; fake.mu.Unlock() }()
		if _, err := s.Sign(ctx, []byte("header.payload")); err == nil || !strings.Contains(err.Error(), "does not verify") {
			t.Fatalf("Sign = %v, want a verification error", err)
		}
	})
	t.Run("key replaced behind the record", func(t *testing.T) {
		moved := rec
		fake.mu.Lock()
		fake.keys[arn], _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		fake.mu.Unlock()
		if _, err := b.Open(ctx, moved); err == nil || !strings.Contains(err.Error(), "no longer has the public key") {
			t.Fatalf("Open = %v", err)
		}
	})
	if _, err := awskms.New(nil); err == nil {
		t.Fatal("New(nil) accepted")
	}
}
