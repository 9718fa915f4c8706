// Package issuertest is an mcpsts issuer in memory, for the tests and
// examples of code that verifies broker tokens (an MCP server behind the
// resource package, an offline verifier): it mints real RFC 9068 access
// tokens with ES256 keys and serves their key set, with no store, KEK
// file or network.
package issuertest

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/issuer/keystoretest"
)

// Broker is an issuer in memory. It is safe for concurrent use.
type Broker struct {
	*issuer.Issuer
	URL string // the issuer URL its tokens name
}

// New starts an issuer for url with one ES256 key.
func New(url string) (*Broker, error) {
	text, err := issuer.GenerateKEK()
	if err != nil {
		return nil, err
	}
	kek, err := issuer.ParseKEK(text)
	if err != nil {
		return nil, err
	}
	iss, err := issuer.New(issuer.Config{Issuer: url, Store: keystoretest.NewMemory(), Local: &issuer.LocalKeys{KEK: kek, Algorithm: issuer.ES256}})
	if err != nil {
		return nil, err
	}
	if err := iss.Start(context.Background()); err != nil {
		return nil, err
	}
	return &Broker{Issuer: iss, URL: url}, nil
}

// Token mints an access token for a workload subject, as the token
// endpoint would after a trust map granted it.
func (b *Broker) Token(audience, clientID, subject string, scopes ...string) (string, error) {
	tok, err := b.Mint(context.Background(), issuer.Grant{Subject: subject, Audience: audience, ClientID: clientID, Scopes: scopes})
	return tok.Raw, err
}

// JWKS is the key set the broker publishes at its jwks_uri.
func (b *Broker) JWKS() []byte {
	rec := httptest.NewRecorder()
	b.JWKSHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
	return rec.Body.Bytes()
}

// Key returns the published key kid for alg: it is a resource.KeySource.
func (b *Broker) Key(_ context.Context, kid, alg string) (crypto.PublicKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b.JWKS(), &set); err != nil {
		return nil, err
	}
	for _, k := range set.Key(kid) {
		if k.Algorithm == alg {
			return k.Key, nil
		}
	}
	return nil, fmt.Errorf("issuertest: no key %q for %s", kid, alg)
}
