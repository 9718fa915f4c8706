package issuer

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpsts/mcpsts/internal/claimname"
)

// VerifiedToken is an access token of this issuer, verified.
type VerifiedToken struct {
	ID        string
	Subject   string
	Audience  string
	ClientID  string
	Scopes    []string
	ExpiresAt time.Time
	Actor     *Actor // the delegation chain, if any
	// Cnf is the token's confirmation (RFC 7800), nil for a bearer token.
	// Verify enforces it; Inspect only reports it.
	Cnf *Confirmation
	// IssuedAt is the token's iat; SingleUse its single_use claim.
	IssuedAt  time.Time
	SingleUse bool
}

// ErrInvalidToken wraps every reason Verify refuses a token.
var ErrInvalidToken = errors.New("issuer: invalid access token")

// Verify checks that raw is an access token this issuer signed with a key
// it publishes, of type at+jwt, unexpired, addressed to audience, and, when
// it is sender-constrained, presented by its holder: peer is the
// connection's client certificate chain, and a certificate-bound token
// (cnf x5t#S256, RFC 8705 §3) verifies only over a connection that
// presented that certificate; a DPoP-bound token (cnf jkt) is refused, as
// this verifier takes no DPoP proof (RFC 9449 §7.2). It is for the broker's
// own endpoints (the admin API); MCP servers verify with the resource
// package against the JWKS, by the same rules.
func (i *Issuer) Verify(raw, audience string, peer []*x509.Certificate) (VerifiedToken, error) {
	v, err := i.Inspect(raw)
	if err != nil {
		return VerifiedToken{}, err
	}
	if v.Audience != audience {
		return VerifiedToken{}, fmt.Errorf("%w: addressed to another audience", ErrInvalidToken)
	}
	if err := v.Cnf.Holds(peer, ""); err != nil {
		return VerifiedToken{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	return v, nil
}

// Holds reports whether a request proved the confirmation c (nil: a
// bearer token, nothing to prove): peer is the connection's client
// certificate chain, jkt the thumbprint of a DPoP proof of the request
// that was verified ("" for none). The one holder check of the broker's
// own tokens (Verify, and exchange's acceptance).
func (c *Confirmation) Holds(peer []*x509.Certificate, jkt string) error {
	switch {
	case c == nil:
		return nil
	case c.JKT != "" && jkt == "":
		return errors.New("the token is DPoP-bound and the request carries no DPoP proof")
	case c.JKT != "":
		if subtle.ConstantTimeCompare([]byte(jkt), []byte(c.JKT)) != 1 {
			return errors.New("the DPoP proof is of another key than the token's")
		}
		return nil
	case len(peer) == 0:
		return errors.New("the token is bound to a client certificate the connection did not present")
	}
	sum := sha256.Sum256(peer[0].Raw)
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(c.X5TS256)) != 1 {
		return errors.New("the token is bound to another client certificate")
	}
	return nil
}

// Inspect verifies raw like Verify but accepts any audience, which it
// returns for the caller to judge: the token endpoint uses it for
// delegation, where the incoming token is addressed to the service that
// now acts for its subject.
func (i *Issuer) Inspect(raw string) (VerifiedToken, error) {
	ks := i.keys.Load()
	if ks == nil {
		return VerifiedToken{}, ErrNoSigningKey
	}
	var c struct {
		jwt.RegisteredClaims
		ClientID  string         `json:"client_id"`
		Scope     string         `json:"scope"`
		Act       *Actor         `json:"act"`
		Cnf       map[string]any `json:"cnf"` // read exactly, not by struct fields
		SingleUse bool           `json:"single_use"`
	}
	tok, err := jwt.ParseWithClaims(raw, &c, ks.keyFunc("at+jwt", "an access token"),
		jwt.WithValidMethods([]string{string(ES256), string(EdDSA), string(RS256)}),
		jwt.WithIssuer(i.cfg.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(i.now),
		jwt.WithLeeway(30*time.Second),
	)
	if err != nil || !tok.Valid {
		return VerifiedToken{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	// encoding/json read the claims without regard to case, keeping the
	// last of names that fold together: refuse a payload where that
	// could matter (an "Aud" or "Scope" beside the real ones).
	if err := claimname.CheckPayload(payloadOf(raw)); err != nil {
		return VerifiedToken{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if len(c.Audience) != 1 {
		return VerifiedToken{}, fmt.Errorf("%w: more than one audience", ErrInvalidToken)
	}
	v := VerifiedToken{ID: c.ID, Subject: c.Subject, Audience: c.Audience[0], ClientID: c.ClientID, ExpiresAt: c.ExpiresAt.Time, Actor: c.Act, SingleUse: c.SingleUse}
	if c.IssuedAt != nil {
		v.IssuedAt = c.IssuedAt.Time
	}
	if c.Cnf != nil {
		x5t, _ := c.Cnf["x5t#S256"].(string)
		jkt, _ := c.Cnf["jkt"].(string)
		if len(c.Cnf) != 1 || x5t == "" && jkt == "" {
			return VerifiedToken{}, fmt.Errorf("%w: cnf must hold exactly one confirmation method this issuer knows", ErrInvalidToken)
		}
		v.Cnf = &Confirmation{X5TS256: x5t, JKT: jkt}
	}
	if c.Scope != "" {
		v.Scopes = strings.Fields(c.Scope)
	}
	return v, nil
}

// keyFunc finds the published key of a token of JOSE type typ (what, in
// errors), the algorithm it was published for and the one the token names
// agreeing.
func (ks *keySet) keyFunc(typ, what string) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		if got, _ := t.Header["typ"].(string); !strings.EqualFold(strings.TrimPrefix(got, "application/"), typ) {
			return nil, errors.New("not " + what + " (typ)")
		}
		kid, _ := t.Header["kid"].(string)
		k, ok := ks.published[kid]
		if !ok || string(k.alg) != t.Method.Alg() {
			return nil, errors.New("not signed by a published key")
		}
		return k.pub, nil
	}
}

// payloadOf decodes the payload of a compact JWS that has parsed.
func payloadOf(raw string) []byte {
	_, rest, _ := strings.Cut(raw, ".")
	seg, _, _ := strings.Cut(rest, ".")
	b, _ := base64.RawURLEncoding.DecodeString(seg)
	return b
}

// HasScope reports whether the token grants scope.
func (v VerifiedToken) HasScope(scope string) bool { return slices.Contains(v.Scopes, scope) }
