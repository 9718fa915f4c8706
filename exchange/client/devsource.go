package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DevSource is the development workload identity of `mcpsts serve --dev`:
// it signs a short-lived workload JWT as the development provider, with the
// provider's key from the dev server's data directory, and the exchange
// goes through the same code path as any other source's evidence. Only a
// dev server trusts that provider.
type DevSource struct {
	Key     *ecdsa.PrivateKey // the development provider's signing key
	KeyID   string
	Issuer  string // the development provider's issuer
	Subject string // the workload's name, e.g. demo-agent
	// Clock is the time the JWT is issued at; nil: time.Now.
	Clock func() time.Time
}

// devTokenLifetime is the life of a development workload JWT: long enough
// for one exchange.
const devTokenLifetime = 5 * time.Minute

// Name implements Source.
func (d DevSource) Name() string { return "dev (" + d.Subject + ")" }

// Evidence implements Source: a JWT of the development provider for
// Subject, addressed to audience.
func (d DevSource) Evidence(_ context.Context, audience string) (Evidence, error) {
	if d.Key == nil || d.Subject == "" || d.Issuer == "" {
		return Evidence{}, errors.New("the development identity needs its key, issuer and subject")
	}
	now := time.Now()
	if d.Clock != nil {
		now = d.Clock()
	}
	var jti [16]byte
	rand.Read(jti[:])
	t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": d.Issuer, "sub": d.Subject, "aud": audience,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(devTokenLifetime).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString(jti[:]),
	})
	t.Header["kid"] = d.KeyID
	raw, err := t.SignedString(d.Key)
	if err != nil {
		return Evidence{}, err
	}
	return Evidence{Token: raw, TokenType: typeJWT}, nil
}
