package issuer_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpsts/mcpsts/issuer/issuertest"
)

// Verifying a broker's access token offline, as a service that saved the
// broker's key set (its jwks_uri) would, with go-jose: the signature by a
// published key, typ at+jwt (RFC 9068), the issuer, one audience (this
// service) and the times. No call to the broker is made.
func Example_verifyOffline() {
	broker, err := issuertest.New("https://sts.example.com")
	if err != nil {
		fmt.Println(err)
		return
	}
	raw, _ := broker.Token("https://mcp.example.com/mcp", "agent", "k8s/system:serviceaccount:apps:agent", "files:read")
	saved := broker.JWKS() // fetched once from https://sts.example.com/.well-known/jwks.json

	var keys jose.JSONWebKeySet
	if err := json.Unmarshal(saved, &keys); err != nil {
		fmt.Println(err)
		return
	}
	tok, err := josejwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, "at+jwt") {
		fmt.Println("not an access token")
		return
	}
	published := keys.Key(h.KeyID)
	if len(published) != 1 {
		fmt.Println("not signed by a published key")
		return
	}
	var claims josejwt.Claims
	var extra struct {
		ClientID string `json:"client_id"`
		Scope    string `json:"scope"`
	}
	if err := tok.Claims(published[0].Key, &claims, &extra); err != nil {
		fmt.Println(err)
		return
	}
	err = claims.ValidateWithLeeway(josejwt.Expected{Issuer: "https://sts.example.com", AnyAudience: josejwt.Audience{"https://mcp.example.com/mcp"}, Time: time.Now()}, 30*time.Second)
	if err != nil || len(claims.Audience) != 1 {
		fmt.Println("refused:", err)
		return
	}
	fmt.Println(claims.Subject)
	fmt.Println(extra.ClientID, extra.Scope)
	// Output:
	// workload:k8s/system:serviceaccount:apps:agent
	// agent files:read
}
