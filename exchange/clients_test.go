package exchange_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"cloud.google.com/go/auth/credentials/externalaccount"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/mcpsts/mcpsts/exchange"
)

// TestMCPGoSDKExchangeToken: the MCP Go SDK's token-exchange client,
// unmodified, gets a token (it sends audience = the authorization server,
// resource = the MCP server, an empty code and client_id in the body).
func TestMCPGoSDKExchangeToken(t *testing.T) {
	e := newEnv(t)
	tok, err := oauthex.ExchangeToken(context.Background(), e.srv.URL, &oauthex.TokenExchangeRequest{
		RequestedTokenType: exchange.TokenTypeAccessToken,
		Audience:           broker,
		Resource:           "https://payments.example.com/mcp",
		Scope:              []string{"payments:read"},
		SubjectToken:       e.subjectToken(mainSub, nil),
		SubjectTokenType:   exchange.TokenTypeIDToken,
	}, &oauthex.ClientCredentials{ClientID: "payments-ci"}, e.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if claims := verify(t, e, tok.AccessToken); claims["aud"] != "https://payments.example.com/mcp" || claims["scope"] != "payments:read" {
		t.Fatalf("claims %v", claims)
	}
}

// TestGoogleExternalAccountClient: Google's external-account credentials,
// unmodified, with a file-sourced subject token, get a token from mcpsts.
func TestGoogleExternalAccountClient(t *testing.T) {
	e := newEnv(t)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(e.subjectToken(mainSub, nil)), 0o600); err != nil {
		t.Fatal(err)
	}
	creds, err := externalaccount.NewCredentials(&externalaccount.Options{
		Audience:         "https://payments.example.com/mcp",
		SubjectTokenType: exchange.TokenTypeJWT,
		TokenURL:         e.srv.URL,
		CredentialSource: &externalaccount.CredentialSource{File: file},
		Scopes:           []string{"payments:read"},
		Client:           e.srv.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := creds.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if claims := verify(t, e, tok.Value); claims["aud"] != "https://payments.example.com/mcp" || claims["client_id"] != "payments-ci" {
		t.Fatalf("claims %v", claims)
	}
}
