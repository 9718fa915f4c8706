package authorize

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
)

// PKCE errors (RFC 7636 §4.4.1, §4.6); the authorization endpoint answers
// them invalid_request, the token endpoint invalid_grant.
var (
	ErrPKCEMethod    = errors.New("code_challenge_method must be S256")
	ErrPKCEChallenge = errors.New("code_challenge must be the base64url SHA-256 of a code verifier (43 characters)")
	ErrPKCEVerifier  = errors.New("code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")
	ErrPKCEMismatch  = errors.New("code_verifier does not match the code_challenge")
)

// CheckChallenge validates a code_challenge and its method at the
// authorization endpoint: S256 only (OAuth 2.1 forbids plain where S256 is
// possible, and every MCP client can).
func CheckChallenge(challenge, method string) error {
	if method != "S256" {
		return ErrPKCEMethod
	}
	if b, err := base64.RawURLEncoding.Strict().DecodeString(challenge); err != nil || len(b) != sha256.Size {
		return ErrPKCEChallenge
	}
	return nil
}

// VerifyPKCE checks a code_verifier at the token endpoint against the
// challenge the authorization request carried (RFC 7636 §4.6). An empty
// challenge with a verifier, or the reverse, is refused: a code that was
// issued without PKCE is never redeemed with it, and never without it
// when it was (RFC 9700 §2.1.1, downgrade).
func VerifyPKCE(challenge, verifier string) error {
	switch {
	case challenge == "" && verifier == "":
		return ErrPKCEVerifier
	case challenge == "":
		return ErrPKCEMismatch
	case !validVerifier(verifier):
		return ErrPKCEVerifier
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) != 1 {
		return ErrPKCEMismatch
	}
	return nil
}

// validVerifier: 43 to 128 unreserved characters (RFC 7636 §4.1).
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// Random returns n random bytes as base64url: for state (at least 16
// bytes, 128 bits, as MCP requires), nonces and authorization codes.
func Random(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// StateBytes is the size of a state value: 256 bits.
const StateBytes = 32
