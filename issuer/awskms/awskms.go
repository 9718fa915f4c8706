// Package awskms signs access tokens with keys that never leave AWS KMS
// (key spec ECC_NIST_P256, algorithm ECDSA_SHA_256, JWS ES256).
package awskms

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/mcpsts/mcpsts/issuer"
)

// BackendName is the issuer.KeyRecord.Backend of KMS keys.
const BackendName = "awskms"

// Client is the part of the KMS API the backend calls; *kms.Client has it.
type Client interface {
	Sign(ctx context.Context, in *kms.SignInput, optFns ...func(*kms.Options)) (*kms.SignOutput, error)
	GetPublicKey(ctx context.Context, in *kms.GetPublicKeyInput, optFns ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
}

// Backend opens KMS-held keys. It is safe for concurrent use.
type Backend struct {
	client Client
}

// New returns a Backend that calls client.
func New(client Client) (*Backend, error) {
	if client == nil {
		return nil, errors.New("awskms: nil client")
	}
	return &Backend{client: client}, nil
}

var _ issuer.Backend = (*Backend)(nil)

// Name implements issuer.Backend.
func (b *Backend) Name() string { return BackendName }

// Record reads the public key of the KMS key keyID (an ID, ARN or alias) and
// returns the record that enrolls it with the issuer (times left to
// issuer.Enroll).
func (b *Backend) Record(ctx context.Context, keyID string) (issuer.KeyRecord, error) {
	pub, der, err := b.publicKey(ctx, keyID)
	if err != nil {
		return issuer.KeyRecord{}, err
	}
	kid, err := issuer.Thumbprint(pub)
	if err != nil {
		return issuer.KeyRecord{}, err
	}
	return issuer.KeyRecord{ID: kid, Algorithm: issuer.ES256, Backend: BackendName, PublicKey: der, ExternalID: keyID}, nil
}

func (b *Backend) publicKey(ctx context.Context, keyID string) (*ecdsa.PublicKey, []byte, error) {
	out, err := b.client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(keyID)})
	if err != nil {
		return nil, nil, fmt.Errorf("awskms: public key of %s: %w", keyID, err)
	}
	if out.KeySpec != types.KeySpecEccNistP256 || out.KeyUsage != types.KeyUsageTypeSignVerify {
		return nil, nil, fmt.Errorf("awskms: key %s is %s for %s; want ECC_NIST_P256 for SIGN_VERIFY", keyID, out.KeySpec, out.KeyUsage)
	}
	pub, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("awskms: public key of %s: %w", keyID, err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, nil, fmt.Errorf("awskms: key %s is not an ECDSA key", keyID)
	}
	return ec, out.PublicKey, nil
}

// Open implements issuer.Backend. It checks that the KMS key still has the
// public key the record publishes.
func (b *Backend) Open(ctx context.Context, rec issuer.KeyRecord) (issuer.Signer, error) {
	if rec.Algorithm != issuer.ES256 {
		return nil, fmt.Errorf("awskms: key %s: algorithm %s, want ES256", rec.ID, rec.Algorithm)
	}
	pub, _, err := b.publicKey(ctx, rec.ExternalID)
	if err != nil {
		return nil, err
	}
	if kid, err := issuer.Thumbprint(pub); err != nil || kid != rec.ID {
		return nil, fmt.Errorf("awskms: KMS key %s no longer has the public key of %s", rec.ExternalID, rec.ID)
	}
	return &signer{client: b.client, keyID: rec.ExternalID, kid: rec.ID, pub: pub}, nil
}

type signer struct {
	client Client
	keyID  string
	kid    string
	pub    *ecdsa.PublicKey
}

func (s *signer) KeyID() string               { return s.kid }
func (s *signer) Algorithm() issuer.Algorithm { return issuer.ES256 }

// Sign asks KMS to sign the SHA-256 digest of signingInput and converts
// its DER signature to the JWS form. The signature is verified before use,
// so that a misbehaving KMS endpoint cannot get a bad token out.
func (s *signer) Sign(ctx context.Context, signingInput []byte) ([]byte, error) {
	digest := sha256.Sum256(signingInput)
	out, err := s.client.Sign(ctx, &kms.SignInput{
		KeyId:            aws.String(s.keyID),
		Message:          digest[:],
		MessageType:      types.MessageTypeDigest,
		SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256,
	})
	if err != nil {
		return nil, fmt.Errorf("awskms: sign with %s: %w", s.keyID, err)
	}
	var sig struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(out.Signature, &sig); err != nil || len(rest) > 0 || sig.R == nil || sig.S == nil {
		return nil, fmt.Errorf("awskms: sign with %s: malformed signature", s.keyID)
	}
	if !ecdsa.Verify(s.pub, digest[:], sig.R, sig.S) {
		return nil, fmt.Errorf("awskms: sign with %s: the signature does not verify with the key's public key", s.keyID)
	}
	raw := make([]byte, 64)
	if sig.R.BitLen() > 256 || sig.S.BitLen() > 256 {
		return nil, fmt.Errorf("awskms: sign with %s: malformed signature", s.keyID)
	}
	sig.R.FillBytes(raw[:32])
	sig.S.FillBytes(raw[32:])
	return raw, nil
}
