package authorize

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// Code is the grant behind an authorization code, kept under the SHA-256 of
// the code: the code itself is never stored.
type Code struct {
	Hash        string // Hash(code)
	ClientID    string
	RedirectURI string // as the authorization request named it, compared exactly at redemption
	Challenge   string // the PKCE S256 code_challenge
	Resource    string // the canonical resource URI the tokens are for
	Scopes      []string
	Provider    string        // the user's identity provider
	Subject     string        // the user
	TTL         time.Duration // of the access tokens (the trust map's)
	// Family names the grant: the refresh tokens issued from this code
	// share it, and a second use of the code revokes them all.
	Family string
	// JKT binds the code to a DPoP key (the request's dpop_jkt, RFC 9449
	// §10): redeemed only with a proof of that key. "" for none.
	JKT       string
	ExpiresAt time.Time
	// Person is what the trust maps read of the person when the code was
	// issued: its redemption and every refresh of its family decide
	// again with it.
	Person Person
	// AccessJTI and AccessExpiresAt name the access token the code's first
	// redemption gave (RecordAccess): a second use revokes it.
	AccessJTI       string
	AccessExpiresAt time.Time
}

// Person is the decision's input about a person kept with a grant: the
// identity provider's issuer and the attributes of the person that the
// trust maps read (as impact analysis records them); Provider and Subject
// are the grant's own fields.
type Person struct {
	Issuer     string         `json:"iss,omitempty"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// Refresh is the grant behind a refresh token, kept under its SHA-256.
// Refresh tokens rotate: each is used once, and its successor is in the
// same Family.
type Refresh struct {
	Hash     string
	Family   string
	ClientID string
	Resource string
	Scopes   []string
	Provider string
	Subject  string
	TTL      time.Duration // of the access tokens
	// JKT binds the token to the DPoP key it was issued with (RFC 9449
	// §5: a public client's refresh token): used only with a proof of
	// that key. "" for none.
	JKT       string
	ExpiresAt time.Time
	// Person is the decision's input about the person (see Code).
	Person Person
	// FamilyExpiresAt is the absolute end of the family, set when its
	// code was redeemed: no rotation goes past it. Zero: not set (a
	// token stored before it existed).
	FamilyExpiresAt time.Time
}

// Errors of Store.
var (
	// ErrNotFound: no such code or refresh token, or a revoked one.
	ErrNotFound = errors.New("authorize: no such grant")
	// ErrReused: a code or refresh token used before. The record comes
	// with it, for its Family to be revoked (RFC 9700 §4.14, OAuth 2.1
	// §4.1.2: a code used twice revokes what it issued).
	ErrReused = errors.New("authorize: grant used before")
)

// Store keeps authorization codes and refresh tokens. It must be safe for
// concurrent use by several processes sharing it: a code or a refresh token
// is used once across all of them.
type Store interface {
	// SaveCode stores a new code's grant.
	SaveCode(ctx context.Context, c Code) error
	// RedeemCode marks the code hash used and returns its grant; a code
	// used before gives its grant and ErrReused, an unknown one
	// ErrNotFound. Expiry is the caller's to check.
	RedeemCode(ctx context.Context, hash string) (Code, error)
	// RecordAccess records the access token a code's redemption gave, for
	// a second use of the code to revoke it.
	RecordAccess(ctx context.Context, hash, jti string, expiresAt time.Time) error
	// SaveRefresh stores a new refresh token's grant.
	SaveRefresh(ctx context.Context, r Refresh) error
	// RotateRefresh marks the refresh token hash used and stores its
	// successor, the same grant under nextHash until nextExpiry, and
	// returns the used one's grant; a token used before gives its grant
	// and ErrReused, a revoked or unknown one ErrNotFound. The successor
	// never outlives the family's FamilyExpiresAt. Expiry is the caller's
	// to check.
	RotateRefresh(ctx context.Context, hash, nextHash string, nextExpiry time.Time) (Refresh, error)
	// RevokeFamily revokes every refresh token of family.
	RevokeFamily(ctx context.Context, family string) error
	// LookupRefresh returns the grant of a refresh token that is neither
	// used nor revoked, without claiming it; ErrNotFound otherwise.
	LookupRefresh(ctx context.Context, hash string) (Refresh, error)
}

// Hash is how codes and refresh tokens are kept: hex SHA-256.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Flow is a browser flow in progress: an authorization request waiting for
// its person to sign in and consent, or a person looking at their consents.
// It is kept server-side under the hash of a single-use key (the state sent
// to the identity provider, or the CSRF token of a form); each step takes
// it and, to go on, saves it again under a new key.
type Flow struct {
	Purpose string `json:"purpose"` // PurposeAuthorize or PurposeConsents
	// Browser is the Hash of the __Host- cookie that binds the flow to the
	// browser that started it.
	Browser string `json:"browser"`

	// The authorization request, checked.
	ClientID    string   `json:"client_id,omitempty"`
	RedirectURI string   `json:"redirect_uri,omitempty"`
	State       string   `json:"state,omitempty"`
	Challenge   string   `json:"code_challenge,omitempty"`
	Resource    string   `json:"resource,omitempty"`
	Scopes      []string `json:"scopes,omitempty"` // as requested; none: the trust map's defaults
	Offline     bool     `json:"offline,omitempty"`
	JKT         string   `json:"dpop_jkt,omitempty"`

	// The upstream login: its nonce and PKCE verifier.
	Nonce    string `json:"nonce,omitempty"`
	Verifier string `json:"verifier,omitempty"`

	// The person, once signed in, and what the trust maps granted.
	Provider string        `json:"provider,omitempty"`
	Subject  string        `json:"subject,omitempty"`
	Person   Person        `json:"person,omitzero"`
	Granted  []string      `json:"granted,omitempty"`
	TTL      time.Duration `json:"ttl,omitempty"`

	ExpiresAt time.Time `json:"expires_at"`
}

// Purposes of a flow.
const (
	PurposeAuthorize = "authorize"
	PurposeConsents  = "consents"
)

// FlowStore keeps browser flows. Each flow key is taken once, across every
// process sharing the store.
type FlowStore interface {
	// SaveFlow stores f under key (a Hash).
	SaveFlow(ctx context.Context, key string, f Flow) error
	// TakeFlow returns the flow under key and removes it: a key taken
	// before gives ErrReused, an unknown one ErrNotFound. Expiry is the
	// caller's to check.
	TakeFlow(ctx context.Context, key string) (Flow, error)
	// PeekFlow returns the flow under key without taking it: ErrNotFound
	// for an unknown key, ErrReused for one taken. Expiry is the
	// caller's to check.
	PeekFlow(ctx context.Context, key string) (Flow, error)
	// RevokeGrants revokes every refresh token of (provider, subject)
	// for clientID: a withdrawn consent leaves no grant behind.
	RevokeGrants(ctx context.Context, provider, subject, clientID string) error
}
