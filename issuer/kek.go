package issuer

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// KEK is a key-encryption key: private signing keys are stored sealed with
// it (AES-256-GCM), bound to their key ID so that a sealed key cannot be
// moved to another record. Safe for concurrent use.
type KEK struct {
	aead cipher.AEAD
}

// KEKSize is the length of a key-encryption key in bytes.
const KEKSize = 32

// sealVersion prefixes sealed keys so that the format can change later.
const sealVersion byte = 1

// ErrUnsealFailed means a sealed key did not open: the key-encryption key is
// not the one it was sealed with, or the stored data was altered.
var ErrUnsealFailed = errors.New("issuer: cannot decrypt the private key: wrong key-encryption key or tampered data")

// NewKEK makes a KEK from 32 secret bytes.
func NewKEK(key []byte) (*KEK, error) {
	if len(key) != KEKSize {
		return nil, fmt.Errorf("issuer: key-encryption key is %d bytes, want %d", len(key), KEKSize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("issuer: key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("issuer: key-encryption key: %w", err)
	}
	return &KEK{aead: aead}, nil
}

// ParseKEK reads a KEK written as base64 (standard or URL alphabet, padded
// or not), as in a KEK file or the MCPSTS_KEK variable.
func ParseKEK(text []byte) (*KEK, error) {
	text = bytes.TrimSpace(text)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(string(text)); err == nil {
			return NewKEK(key)
		}
	}
	return nil, errors.New("issuer: key-encryption key is not base64 of 32 bytes")
}

// GenerateKEK returns a new random KEK, base64-encoded as ParseKEK reads it.
func GenerateKEK() ([]byte, error) {
	key := make([]byte, KEKSize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("issuer: generate key-encryption key: %w", err)
	}
	return []byte(base64.StdEncoding.EncodeToString(key) + "\n"), nil
}

func sealAAD(kid string) []byte { return []byte("mcpsts signing key " + kid) }

// Seal encrypts the private key of kid.
func (k *KEK) Seal(kid string, plaintext []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize(), 1+k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("issuer: seal: %w", err)
	}
	out := append([]byte{sealVersion}, nonce...)
	return k.aead.Seal(out, nonce, plaintext, sealAAD(kid)), nil
}

// Open decrypts what Seal sealed for kid; any alteration, or another kid,
// gives ErrUnsealFailed.
func (k *KEK) Open(kid string, sealed []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < 1+n+k.aead.Overhead() || sealed[0] != sealVersion {
		return nil, ErrUnsealFailed
	}
	plain, err := k.aead.Open(nil, sealed[1:1+n], sealed[1+n:], sealAAD(kid))
	if err != nil {
		return nil, ErrUnsealFailed
	}
	return plain, nil
}
