package devpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/go-jose/go-jose/v4"
)

// Development workload identity: serve --dev trusts a provider of its own,
// whose signing key is in the data directory; mcpsts token --dev signs
// workload JWTs with it. It is trusted nowhere else.
const (
	// IdentityKeyFile is the development provider's signing key (ES256).
	IdentityKeyFile = "dev-identity-key.pem"
	// IssuerFile holds the issuer URL of the running dev server, for
	// mcpsts token --dev.
	IssuerFile = "issuer"
)

// EnsureIdentityKey loads the development provider's key from dir, making
// it (mode 0600) when missing, and returns its public key set, with one
// key whose kid is its RFC 7638 thumbprint.
func EnsureIdentityKey(dir string) (jwks []byte, err error) {
	key, err := LoadIdentityKey(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, fmt.Errorf("devpki: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("devpki: %w", err)
		}
		if err := writeAtomic(filepath.Join(dir, IdentityKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	jwk := jose.JSONWebKey{Key: &key.PublicKey, KeyID: IdentityKeyID(key), Algorithm: "ES256", Use: "sig"}
	return json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
}

// LoadIdentityKey reads the development provider's key from dir.
func LoadIdentityKey(dir string) (*ecdsa.PrivateKey, error) {
	path := filepath.Join(dir, IdentityKeyFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("devpki: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("devpki: %s: no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("devpki: %s: %w", path, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("devpki: %s: not an ECDSA key", path)
	}
	return key, nil
}

// IdentityKeyID is the kid of the development provider's key.
func IdentityKeyID(key *ecdsa.PrivateKey) string {
	tp, _ := (&jose.JSONWebKey{Key: &key.PublicKey}).Thumbprint(crypto.SHA256) // a P-256 key always has one
	return base64.RawURLEncoding.EncodeToString(tp)
}
