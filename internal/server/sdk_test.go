package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/mcpsts/mcpsts/examples/mcp-server/mcpserver"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/resource"
)

// TestGoSDKOAuthClient: the MCP Go SDK's own OAuth client
// (auth.NewAuthorizationCodeHandler, unmodified), with a pre-registered
// client, a client ID metadata document and dynamic registration, driven by Chromium
// through the sign-in and the consent screen, connects to the example
// files server, lists its tools and calls one; a tool that needs a scope
// the token lacks makes it step up through the 403 insufficient_scope
// challenge.
func TestGoSDKOAuthClient(t *testing.T) {
	docs := http.NewServeMux()
	site := httptest.NewTLSServer(docs)
	defer site.Close()
	lnFiles, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	files := "https://" + lnFiles.Addr().String() + "/mcp"
	p := startPeople(t, files, "registration: {dynamic: true}\n", Options{ClientDocuments: exchange.ClientMetadataOptions{Transport: site.Client().Transport, AllowPrivateAddresses: true}})
	cimd := site.URL + "/sdk-client.json"
	docs.HandleFunc("/sdk-client.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"client_id": %q, "client_name": "SDK Document Client", "redirect_uris": ["http://127.0.0.1/cb"],
			"grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"], "token_endpoint_auth_method": "none"}`, cimd)
	})

	// The example files server, verifying the broker's tokens.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(p.caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	rs, err := resource.New(resource.Config{Resource: files, Issuer: p.Issuer, Transport: tr, ToolScopes: mcpserver.FilesToolScopes, Implies: mcpserver.FilesImplies})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rs.Run(ctx)
	srv := &http.Server{Handler: mcpserver.Files(rs, "", &http.Client{Transport: tr}), TLSConfig: &tls.Config{Certificates: []tls.Certificate{p.cert}}}
	go srv.ServeTLS(lnFiles, "", "")
	defer srv.Close()

	browser := newBrowser(t, p.leafPEM, p.idp.CAPEM())
	for _, tc := range []struct {
		name   string
		config func(*auth.AuthorizationCodeHandlerConfig)
		client string
		// stepUp: the SDK registers a new client when it re-authorizes
		// after dynamic registration, and the example server binds its
		// MCP session to the caller's client (a session is not
		// authentication), so a registered client steps up in a new
		// session only.
		stepUp bool
	}{
		{"pre-registered client", func(c *auth.AuthorizationCodeHandlerConfig) {
			c.PreregisteredClient = &oauthex.ClientCredentials{ClientID: desktopID, Issuer: p.Issuer}
		}, desktopName, true},
		{"client ID metadata document", func(c *auth.AuthorizationCodeHandlerConfig) {
			c.ClientIDMetadataDocumentConfig = &auth.ClientIDMetadataDocumentConfig{URL: cimd}
		}, "SDK Document Client", true},
		{"dynamic client registration", func(c *auth.AuthorizationCodeHandlerConfig) {
			c.DynamicClientRegistrationConfig = &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
				ClientName: "SDK Registered Client", RedirectURIs: []string{p.redirect}, TokenEndpointAuthMethod: "none",
				GrantTypes: []string{"authorization_code", "refresh_token"}}}
		}, "SDK Registered Client", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			consents := 0
			cfg := &auth.AuthorizationCodeHandlerConfig{
				RedirectURL:         p.redirect,
				Client:              &http.Client{Transport: tr, Timeout: 20 * time.Second},
				RequestRefreshToken: true,
				// Ask first for reading only (the server advertises
				// more), so that writing steps up.
				ScopeFilter: func(discovered []string) []string {
					if slices.Contains(discovered, "audit:record") {
						return []string{"files:read"}
					}
					return discovered
				},
				AuthorizationCodeFetcher: func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
					back, consented, err := p.throughBrowser(browser, args.URL, tc.client)
					if consented {
						consents++
					}
					if err != nil {
						return nil, err
					}
					if back.Get("code") == "" {
						return nil, fmt.Errorf("authorization refused: %v (asked %s)", back, args.URL)
					}
					return &auth.AuthorizationResult{Code: back.Get("code"), State: back.Get("state"), Iss: back.Get("iss")}, nil
				},
			}
			tc.config(cfg)
			h, err := auth.NewAuthorizationCodeHandler(cfg)
			if err != nil {
				t.Fatal(err)
			}
			rctx, rcancel := context.WithTimeout(ctx, 90*time.Second)
			defer rcancel()
			c := mcp.NewClient(&mcp.Implementation{Name: "sdk-oauth-test", Version: "1.0.0"}, nil)
			cs, err := c.Connect(rctx, &mcp.StreamableClientTransport{Endpoint: files, HTTPClient: &http.Client{Transport: tr}, OAuthHandler: h, MaxRetries: -1}, nil)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer cs.Close()
			tools, err := cs.ListTools(rctx, nil)
			if err != nil || len(tools.Tools) != 3 {
				t.Fatalf("tools: %v, %v", tools, err)
			}
			if got := callText(t, rctx, cs, "read_file", map[string]any{"name": "readme.txt"}); got != "hello from the files server" {
				t.Fatalf("read_file = %q", got)
			}
			if consents != 1 {
				t.Fatalf("%d consent screens before step-up, want 1", consents)
			}
			// A registration that got a token is kept past unused_expiry.
			for id, c := range *p.clients.clients.Load() {
				if c.Name == tc.client && strings.HasPrefix(id, exchange.DynamicClientPrefix) && c.FirstUsedAt == 0 {
					t.Errorf("client %s got a token, but its first use is not recorded", id)
				}
			}
			// write_file needs files:write: the 403 makes the SDK ask
			// again, for more, and the person consents to more.
			if !tc.stepUp {
				return
			}
			defer func() {
				if t.Failed() {
					data, _ := os.ReadFile(p.auditFile)
					t.Logf("audit log:\n%s", data)
				}
			}()
			if got := callText(t, rctx, cs, "write_file", map[string]any{"name": "x", "content": "y"}); got != "written" {
				t.Fatalf("write_file after step-up = %q", got)
			}
			if consents != 2 {
				t.Fatalf("%d consent screens, want 2 (the step-up asks for files:write)", consents)
			}
		})
	}
}

func callText(t *testing.T, ctx context.Context, cs *mcp.ClientSession, tool string, args map[string]any) string {
	t.Helper()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	var out []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			out = append(out, tc.Text)
		}
	}
	if res.IsError {
		t.Fatalf("%s: %s", tool, strings.Join(out, "\n"))
	}
	return strings.Join(out, "\n")
}

// throughBrowser opens an authorization URL in Chromium, signs alice in,
// approves the consent screen when there is one (checking it names the
// client), and returns what came back to the client's redirect URI.
func (p *people) throughBrowser(ctx context.Context, authURL, clientName string) (back url.Values, consented bool, err error) {
	before := len(p.cb.got)
	if err := chromedp.Do(ctx, chromedp.Navigate(authURL)); err != nil {
		return nil, false, err
	}
	if err := signIn(ctx, "alice"); err != nil {
		return nil, false, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		p.cb.mu.Lock()
		n := len(p.cb.got)
		p.cb.mu.Unlock()
		if n > before {
			p.cb.mu.Lock()
			defer p.cb.mu.Unlock()
			return p.cb.got[n-1], consented, nil
		}
		text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`body`)))
		if !consented && strings.Contains(text, "wants access") {
			if !strings.Contains(text, clientName) {
				return nil, false, fmt.Errorf("the consent screen does not name %q:\n%s", clientName, text)
			}
			if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[value=approve]`))); err != nil {
				return nil, false, err
			}
			consented = true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, consented, errors.New("the browser never came back to the client")
}
