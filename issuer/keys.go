package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"sort"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Algorithm is a JWS signing algorithm the issuer can sign with.
type Algorithm string

// The supported algorithms. RS256 is required by RFC 9068; an RS256
// signature costs about 30 times an ES256 one (docs/PERFORMANCE.md).
const (
	ES256 Algorithm = "ES256"
	EdDSA Algorithm = "EdDSA"
	RS256 Algorithm = "RS256"
)

// ParseAlgorithm accepts ES256, EdDSA or RS256.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch a := Algorithm(s); a {
	case ES256, EdDSA, RS256:
		return a, nil
	}
	return "", fmt.Errorf("issuer: signing algorithm %q is not supported (want ES256, EdDSA or RS256)", s)
}

// Lifetimes that bound the key lifecycle.
const (
	// MaxTokenLifetime is the hard limit of an access token's lifetime.
	MaxTokenLifetime = 60 * time.Minute
	// MinTokenLifetime is the shortest lifetime Mint accepts.
	MinTokenLifetime = time.Minute
	// ClockLeeway covers clock differences between us and verifiers.
	ClockLeeway = 5 * time.Minute
	// PublishLead is how long a new key is published before it signs, so
	// that every verifier's cached key set holds it by then.
	PublishLead = MaxTokenLifetime + ClockLeeway
	// Retention is how long a retired key stays published: until every
	// token it signed has expired.
	Retention = MaxTokenLifetime + ClockLeeway
	// MinRSABits is the smallest RSA key accepted.
	MinRSABits = 2048
)

// KeyRecord is a signing key as stored. Its state is not stored: it follows
// from the times and the clock (see Lifecycle), so that every replica derives
// the same state from the same rows.
type KeyRecord struct {
	ID        string // the kid: the RFC 7638 thumbprint of the public key
	Algorithm Algorithm
	// Backend names who holds the private key: "local" (sealed here) or an
	// external signer such as "awskms".
	Backend   string
	PublicKey []byte // PKIX DER
	// Sealed is the local private key (PKCS #8) sealed with the KEK.
	Sealed []byte
	// ExternalID is the external backend's key reference (a KMS key ARN).
	ExternalID string
	CreatedAt  time.Time // published from then on
	ActivateAt time.Time // signs from then on, until a newer key activates
}

// Public parses the record's public key.
func (r KeyRecord) Public() (crypto.PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(r.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("issuer: key %s: public key: %w", r.ID, err)
	}
	return pub, nil
}

// KeyChange is what an UpdateKeys callback asks to write.
type KeyChange struct {
	Add    []KeyRecord
	Remove []string // key IDs
}

// KeyStore keeps the signing keys that every replica shares.
//
// Implementations must be safe for concurrent use by goroutines and by
// processes sharing the store. UpdateKeys runs fn on the current keys
// inside a transaction that excludes every other UpdateKeys on the store
// until it commits, and writes fn's change; if fn returns an error nothing
// is written and UpdateKeys returns it.
type KeyStore interface {
	Keys(ctx context.Context) ([]KeyRecord, error)
	UpdateKeys(ctx context.Context, fn func(keys []KeyRecord) (KeyChange, error)) error
}

// KeyState is where a key is in its lifecycle.
type KeyState string

// The lifecycle states. A removed key is deleted from the store.
const (
	StatePending KeyState = "pending" // published, not yet signing
	StateActive  KeyState = "active"  // published, signing
	StateRetired KeyState = "retired" // published until its tokens expire
	StateExpired KeyState = "expired" // no longer published; to be removed
)

// KeyStatus is a key with its state at a given time.
type KeyStatus struct {
	KeyRecord
	State KeyState
	// RetiredAt and RemoveAt are set once a newer key has activated.
	RetiredAt, RemoveAt time.Time
}

// Lifecycle returns the state of every key at now, ordered by activation.
// The active key is the one that activated last; every key that activated
// before it is retired when the next one activated, and expires Retention
// later.
func Lifecycle(keys []KeyRecord, now time.Time) []KeyStatus {
	out := make([]KeyStatus, len(keys))
	for i, k := range keys {
		out[i] = KeyStatus{KeyRecord: k, State: StatePending}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.ActivateAt.Equal(b.ActivateAt) {
			return a.ActivateAt.Before(b.ActivateAt)
		}
		return a.ID < b.ID
	})
	for i := range out {
		if out[i].ActivateAt.After(now) {
			break // this and every later one is pending
		}
		if i+1 < len(out) && !out[i+1].ActivateAt.After(now) {
			out[i].RetiredAt = out[i+1].ActivateAt
			out[i].RemoveAt = out[i].RetiredAt.Add(Retention)
			out[i].State = StateRetired
			if !out[i].RemoveAt.After(now) {
				out[i].State = StateExpired
			}
			continue
		}
		out[i].State = StateActive
	}
	return out
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of pub, base64url: the kid.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("issuer: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// checkKeyType reports whether pub fits alg.
func checkKeyType(alg Algorithm, pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if alg == ES256 && k.Curve.Params().Name == "P-256" {
			return nil
		}
	case ed25519.PublicKey:
		if alg == EdDSA {
			return nil
		}
	case *rsa.PublicKey:
		if alg == RS256 {
			if k.N.BitLen() < MinRSABits {
				return fmt.Errorf("issuer: RSA key of %d bits is too small (want at least %d)", k.N.BitLen(), MinRSABits)
			}
			return nil
		}
	}
	return fmt.Errorf("issuer: a %T does not fit %s", pub, alg)
}
