package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Signer makes proofs with one private key. It is safe for concurrent use.
type Signer struct {
	signer jose.Signer
	jkt    string
	key    crypto.Signer
	clock  func() time.Time
}

// GenerateKey makes a new P-256 key, the usual DPoP key (ES256).
func GenerateKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// NewSigner returns a signer for key: ES256 for a P-256 key, RS256 for RSA.
// clock is the time of the proofs (nil: time.Now).
func NewSigner(key crypto.Signer, clock func() time.Time) (*Signer, error) {
	var alg jose.SignatureAlgorithm
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("dpop: an EC key must be P-256")
		}
		alg = jose.ES256
	case *rsa.PrivateKey:
		alg = jose.RS256
	default:
		return nil, errors.New("dpop: want a P-256 EC or an RSA private key")
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{EmbedJWK: true}).WithType(Type))
	if err != nil {
		return nil, fmt.Errorf("dpop: %w", err)
	}
	jkt, err := Thumbprint(&jose.JSONWebKey{Key: key.Public()})
	if err != nil {
		return nil, fmt.Errorf("dpop: %w", err)
	}
	if clock == nil {
		clock = time.Now
	}
	return &Signer{signer: s, jkt: jkt, key: key, clock: clock}, nil
}

// JKT is the thumbprint of the signer's key: the cnf.jkt of its tokens.
func (s *Signer) JKT() string { return s.jkt }

// Key is the private key.
func (s *Signer) Key() crypto.Signer { return s.key }

// Proof makes a proof for a request: method and URL (query and fragment
// dropped), the access token it goes with ("" at the token endpoint) and
// the server's nonce ("" while it gave none).
func (s *Signer) Proof(method, url, accessToken, nonce string) (string, error) {
	u, ok := normalize(url)
	if !ok {
		return "", fmt.Errorf("dpop: %q is not an absolute URL", url)
	}
	var jti [16]byte
	rand.Read(jti[:])
	c := map[string]any{"jti": base64.RawURLEncoding.EncodeToString(jti[:]), "htm": method, "htu": u, "iat": s.clock().Unix()}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		c["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if nonce != "" {
		c["nonce"] = nonce
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	jws, err := s.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("dpop: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// ReadKey reads a PEM private key (PKCS#8, SEC 1 or PKCS#1).
func ReadKey(file string) (crypto.Signer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", file)
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("%s: not a PEM private key", file)
}

// WriteKey writes key to file as PKCS#8 PEM, readable by its owner only.
func WriteKey(file string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}
