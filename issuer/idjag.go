package issuer

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpsts/mcpsts/internal/claimname"
)

// IDJAGType is the JOSE typ of an Identity Assertion JWT Authorization
// Grant (the MCP extension enterprise-managed authorization, SEP-990).
const IDJAGType = "oauth-id-jag+jwt"

// MaxIDJAGLifetime bounds an ID-JAG's lifetime: it is a grant to be
// redeemed at once, not a credential to keep.
const MaxIDJAGLifetime = 5 * time.Minute

// IDJAG is what an ID-JAG says: that the user Subject may, through the
// client ClientID, get from the authorization server Audience a token for
// Resource with Scopes.
type IDJAG struct {
	Subject  string
	Audience string // the target authorization server's issuer
	Resource string // the MCP server
	ClientID string
	Scopes   []string
	TTL      time.Duration // 0 or above MaxIDJAGLifetime: MaxIDJAGLifetime
	// Person holds what the trust maps read of the person (claim
	// mcpsts_person: the identity provider's issuer and attributes) for an
	// ID-JAG this issuer will redeem itself and decide again; nil: none
	// (an ID-JAG for another authorization server carries none).
	Person map[string]any
}

type idjagClaims struct {
	Issuer   string         `json:"iss"`
	Subject  string         `json:"sub"`
	Audience string         `json:"aud"`
	Resource string         `json:"resource"`
	ClientID string         `json:"client_id"`
	Scope    string         `json:"scope,omitempty"`
	ID       string         `json:"jti"`
	IssuedAt int64          `json:"iat"`
	Expiry   int64          `json:"exp"`
	Person   map[string]any `json:"mcpsts_person,omitempty"`
}

// MintIDJAG signs an ID-JAG with the current signing key, typ
// oauth-id-jag+jwt, so that no verifier of access tokens (typ at+jwt)
// accepts it as one.
func (i *Issuer) MintIDJAG(ctx context.Context, g IDJAG) (Token, error) {
	switch {
	case g.Subject == "" || strings.ContainsFunc(g.Subject, isControl):
		return Token{}, invalid("ID-JAG: empty subject or control characters")
	case g.Audience == "" || g.Resource == "" || g.ClientID == "":
		return Token{}, invalid("ID-JAG: audience, resource and client_id are required")
	}
	ttl := g.TTL
	if ttl <= 0 || ttl > MaxIDJAGLifetime {
		ttl = MaxIDJAGLifetime
	}
	now := i.now()
	key, err := i.keys.Load().signer(now)
	if err != nil {
		return Token{}, err
	}
	header, err := encodeTypedHeader(key.signer, IDJAGType)
	if err != nil {
		return Token{}, err
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Token{}, fmt.Errorf("issuer: jti: %w", err)
	}
	iat := now.Truncate(time.Second)
	c := idjagClaims{Issuer: i.cfg.Issuer, Subject: g.Subject, Audience: g.Audience, Resource: g.Resource, ClientID: g.ClientID,
		Scope: strings.Join(g.Scopes, " "), ID: base64.RawURLEncoding.EncodeToString(id[:]), IssuedAt: iat.Unix(), Expiry: iat.Add(ttl).Unix(), Person: g.Person}
	payload, err := json.Marshal(c)
	if err != nil {
		return Token{}, fmt.Errorf("issuer: ID-JAG: %w", err)
	}
	raw, err := sign(ctx, key.signer, header, payload)
	if err != nil {
		return Token{}, err
	}
	return Token{Raw: raw, ID: c.ID, KeyID: key.signer.KeyID(), Subject: g.Subject, Audience: g.Audience, ClientID: g.ClientID,
		Scopes: g.Scopes, IssuedAt: iat, ExpiresAt: iat.Add(ttl)}, nil
}

// VerifiedIDJAG is an ID-JAG this issuer signed, verified.
type VerifiedIDJAG struct {
	IDJAG
	ID        string // jti
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// VerifyIDJAG verifies an ID-JAG this issuer signed (mcpsts being both the
// users' identity provider and the MCP authorization server): typ
// oauth-id-jag+jwt, a published key, this issuer, one audience equal to
// audience, unexpired, a lifetime within MaxIDJAGLifetime, and the claims a
// redemption needs.
func (i *Issuer) VerifyIDJAG(raw, audience string) (VerifiedIDJAG, error) {
	ks := i.keys.Load()
	if ks == nil {
		return VerifiedIDJAG{}, ErrNoSigningKey
	}
	var c struct {
		jwt.RegisteredClaims
		Resource string         `json:"resource"`
		ClientID string         `json:"client_id"`
		Scope    string         `json:"scope"`
		Person   map[string]any `json:"mcpsts_person"`
	}
	_, err := jwt.ParseWithClaims(raw, &c, ks.keyFunc(IDJAGType, "an ID-JAG"),
		jwt.WithValidMethods([]string{string(ES256), string(EdDSA), string(RS256)}),
		jwt.WithIssuer(i.cfg.Issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(i.now),
		jwt.WithLeeway(30*time.Second),
	)
	switch {
	case err != nil:
		return VerifiedIDJAG{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	case len(c.Audience) != 1 || c.IssuedAt == nil || c.ID == "" || c.Subject == "" || c.Resource == "" || c.ClientID == "":
		return VerifiedIDJAG{}, fmt.Errorf("%w: an ID-JAG has one aud, iat, jti, sub, resource and client_id", ErrInvalidToken)
	case c.ExpiresAt.Sub(c.IssuedAt.Time) > MaxIDJAGLifetime:
		return VerifiedIDJAG{}, fmt.Errorf("%w: an ID-JAG lives at most %s", ErrInvalidToken, MaxIDJAGLifetime)
	}
	if err := claimname.CheckPayload(payloadOf(raw)); err != nil {
		return VerifiedIDJAG{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	return VerifiedIDJAG{IDJAG: IDJAG{Subject: c.Subject, Audience: c.Audience[0], Resource: c.Resource, ClientID: c.ClientID, Scopes: strings.Fields(c.Scope), Person: c.Person},
		ID: c.ID, IssuedAt: c.IssuedAt.Time, ExpiresAt: c.ExpiresAt.Time}, nil
}
