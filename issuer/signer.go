package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Signer signs JWS signing inputs with one key. Implementations must be
// safe for concurrent use. Sign returns the signature in JWS form (for
// ES256, the 64-byte r||s), or an error when the key could not sign; it may
// block on a remote service (a KMS) until ctx is done.
type Signer interface {
	KeyID() string
	Algorithm() Algorithm
	Sign(ctx context.Context, signingInput []byte) ([]byte, error)
}

// Backend opens the stored keys of one kind: Name is the KeyRecord.Backend
// it serves. Implementations must be safe for concurrent use.
type Backend interface {
	Name() string
	Open(ctx context.Context, rec KeyRecord) (Signer, error)
}

// signingMethod is golang-jwt's method for alg: it sets the header's alg and
// signs for local keys.
func signingMethod(alg Algorithm) jwt.SigningMethod {
	switch alg {
	case ES256:
		return jwt.SigningMethodES256
	case EdDSA:
		return jwt.SigningMethodEdDSA
	default:
		return jwt.SigningMethodRS256
	}
}

// LocalBackendName is the Backend name of keys generated and sealed here.
const LocalBackendName = "local"

// LocalKeys generates signing keys here and stores them sealed with a KEK.
type LocalKeys struct {
	KEK       *KEK
	Algorithm Algorithm // for new keys
	RSABits   int       // for new RS256 keys; 0 means 2048
}

// Name implements Backend.
func (l *LocalKeys) Name() string { return LocalBackendName }

// NewKey generates a key of l.Algorithm and seals it. Times are left to the
// caller.
func (l *LocalKeys) NewKey() (KeyRecord, error) {
	priv, err := generate(l.Algorithm, l.RSABits)
	if err != nil {
		return KeyRecord{}, err
	}
	return l.record(priv)
}

func (l *LocalKeys) record(priv crypto.Signer) (KeyRecord, error) {
	pub := priv.Public()
	if err := checkKeyType(l.Algorithm, pub); err != nil {
		return KeyRecord{}, err
	}
	kid, err := Thumbprint(pub)
	if err != nil {
		return KeyRecord{}, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return KeyRecord{}, fmt.Errorf("issuer: marshal public key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return KeyRecord{}, fmt.Errorf("issuer: marshal private key: %w", err)
	}
	sealed, err := l.KEK.Seal(kid, privDER)
	if err != nil {
		return KeyRecord{}, err
	}
	return KeyRecord{ID: kid, Algorithm: l.Algorithm, Backend: LocalBackendName, PublicKey: pubDER, Sealed: sealed}, nil
}

func generate(alg Algorithm, rsaBits int) (crypto.Signer, error) {
	switch alg {
	case ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case RS256:
		if rsaBits == 0 {
			rsaBits = MinRSABits
		}
		if rsaBits < MinRSABits {
			return nil, fmt.Errorf("issuer: RSA keys of %d bits are too small (want at least %d)", rsaBits, MinRSABits)
		}
		return rsa.GenerateKey(rand.Reader, rsaBits)
	}
	return nil, fmt.Errorf("issuer: cannot generate keys for %q", alg)
}

// Open implements Backend: it unseals the private key and checks that it is
// the one the record publishes.
func (l *LocalKeys) Open(_ context.Context, rec KeyRecord) (Signer, error) {
	der, err := l.KEK.Open(rec.ID, rec.Sealed)
	if err != nil {
		return nil, fmt.Errorf("issuer: key %s: %w", rec.ID, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("issuer: key %s: private key: %w", rec.ID, err)
	}
	priv, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("issuer: key %s: %T cannot sign", rec.ID, k)
	}
	if err := checkKeyType(rec.Algorithm, priv.Public()); err != nil {
		return nil, fmt.Errorf("issuer: key %s: %w", rec.ID, err)
	}
	if kid, err := Thumbprint(priv.Public()); err != nil || kid != rec.ID {
		return nil, fmt.Errorf("issuer: key %s: private key does not match the key ID", rec.ID)
	}
	return &localSigner{kid: rec.ID, alg: rec.Algorithm, method: signingMethod(rec.Algorithm), key: priv}, nil
}

type localSigner struct {
	kid    string
	alg    Algorithm
	method jwt.SigningMethod
	key    crypto.Signer
}

func (s *localSigner) KeyID() string        { return s.kid }
func (s *localSigner) Algorithm() Algorithm { return s.alg }

func (s *localSigner) Sign(_ context.Context, signingInput []byte) ([]byte, error) {
	sig, err := s.method.Sign(string(signingInput), s.key)
	if err != nil {
		return nil, fmt.Errorf("issuer: sign with %s: %w", s.kid, err)
	}
	return sig, nil
}

// timeOrZero keeps time values at the store's microsecond precision.
func timeOrZero(t time.Time) time.Time { return t.Truncate(time.Microsecond) }
