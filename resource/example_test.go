package resource_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"golang.org/x/oauth2"

	"github.com/mcpsts/mcpsts/issuer/issuertest"
	"github.com/mcpsts/mcpsts/resource"
)

// Protecting an MCP server: the middleware verifies the caller's access
// token (issued by the broker for this server alone) and the scopes the
// route needs, and hands the handler the verified caller, never the token.
func ExampleServer_Middleware() {
	broker, _ := issuertest.New("https://sts.example.com")
	rs, err := resource.New(resource.Config{
		Resource: "https://mcp.example.com/mcp", // this server's MCP URL: the tokens' aud
		Issuer:   broker.URL,
		Keys:     broker, // in production: nil, the broker's keys by OIDC discovery (see Server.Run)
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	mcp := rs.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := resource.CallerFromContext(r.Context())
		fmt.Println("caller:", c.Claims.Subject, c.Claims.ClientID, c.Claims.Scopes)
		fmt.Println("token forwarded:", r.Header.Get("Authorization") != "")
	}), "files:read")

	call := func(token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "https://mcp.example.com/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		mcp.ServeHTTP(rec, req)
		return rec
	}
	tok, _ := broker.Token("https://mcp.example.com/mcp", "agent", "k8s/system:serviceaccount:apps:agent", "files:read")
	call(tok)
	other, _ := broker.Token("https://other.example.com/mcp", "agent", "k8s/system:serviceaccount:apps:agent", "files:read")
	fmt.Println(call(other).Header().Get("WWW-Authenticate"))
	fmt.Println(call("").Code)
	// Output:
	// caller: workload:k8s/system:serviceaccount:apps:agent agent [files:read]
	// token forwarded: false
	// Bearer error="invalid_token", error_description="the token is not for this server (aud)", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
	// 401
}

// printingDelegator stands in for *client.Client (exchange/client), which
// performs the delegation exchange at the broker.
type printingDelegator struct{}

func (printingDelegator) Delegate(_ context.Context, _, audience string, scopes []string) (*oauth2.Token, error) {
	fmt.Println("delegation exchange for", audience, scopes)
	return &oauth2.Token{AccessToken: "a-new-token", TokenType: "Bearer"}, nil
}

// Calling another MCP server on the caller's behalf: Delegate gets a new
// token for that server from the broker, with this server as the actor
// (act); the incoming token is never forwarded.
func ExampleDelegate() {
	broker, _ := issuertest.New("https://sts.example.com")
	rs, _ := resource.New(resource.Config{Resource: "https://files.example.com/mcp", Issuer: broker.URL, Keys: broker, Delegator: printingDelegator{}})
	h := rs.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, err := resource.Delegate(r.Context(), "https://audit.example.com/mcp", "audit:record")
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println("downstream token type:", tok.TokenType)
	}))
	tok, _ := broker.Token("https://files.example.com/mcp", "agent", "k8s/system:serviceaccount:apps:agent", "files:read", "audit:record")
	req := httptest.NewRequest(http.MethodGet, "https://files.example.com/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	h.ServeHTTP(httptest.NewRecorder(), req)
	// Output:
	// delegation exchange for https://audit.example.com/mcp [audit:record]
	// downstream token type: Bearer
}
