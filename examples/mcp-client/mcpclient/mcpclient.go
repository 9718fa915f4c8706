// Package mcpclient is an MCP client that acts for a person: the MCP Go
// SDK's OAuth client (auth.AuthorizationCodeHandler) discovers mcpsts from
// the MCP server's 401, sends the person's browser to sign in and consent,
// receives the code on a loopback redirect URI (RFC 8252), and then lists
// the server's tools and calls one.
package mcpclient

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// ErrRefused is a run's end when the person denied the request at the
// consent screen, or the authorization server refused it: the error names
// the code the redirect carried (access_denied, invalid_scope, ...).
var ErrRefused = errors.New("the authorization was refused")

// callback is what the browser brought back to the redirect URI.
type callback struct {
	res *auth.AuthorizationResult
	err string // the error parameter, when refused
}

// Config says what to connect to and how.
type Config struct {
	// Server is the MCP server's URL.
	Server string
	// ClientID is the client's ID at mcpsts: a registered client (serve
	// --dev registers demo-app), or the https URL of its metadata document.
	ClientID string
	// HTTPClient trusts the MCP server and mcpsts.
	HTTPClient *http.Client
	// Open shows the person the authorization URL (prints it, or opens a
	// browser).
	Open func(url string) error
	// Tool and Args are the call to make (default read_file readme.txt).
	Tool string
	Args map[string]any
	Out  io.Writer
}

// Run connects as the person, prints the tools and the call's result.
func Run(ctx context.Context, c Config) error {
	if c.Tool == "" {
		c.Tool, c.Args = "read_file", map[string]any{"name": "readme.txt"}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	results := make(chan callback, 1)
	// The first refusal ends the run: the SDK would ask again.
	var refusal atomic.Pointer[error]
	refused := func() error {
		if e := refusal.Load(); e != nil {
			return *e
		}
		return nil
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		if e := q.Get("error"); e != "" {
			fmt.Fprintf(w, "The authorization was refused (%s). You can close this tab.\n", e)
		} else {
			fmt.Fprintln(w, "Signed in. You can close this tab and go back to the terminal.")
		}
		select {
		case results <- callback{res: &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, err: q.Get("error")}:
		default:
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	redirect := "http://" + ln.Addr().String() + "/callback"

	cfg := &auth.AuthorizationCodeHandlerConfig{
		RedirectURL:         redirect,
		Client:              c.HTTPClient,
		RequestRefreshToken: true,
		AuthorizationCodeFetcher: func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			if err := refused(); err != nil {
				return nil, err
			}
			if err := c.Open(args.URL); err != nil {
				return nil, err
			}
			select {
			case cb := <-results:
				if cb.err != "" || cb.res.Code == "" {
					err := fmt.Errorf("%w (%s)", ErrRefused, cmp.Or(cb.err, "no code"))
					refusal.CompareAndSwap(nil, &err)
					return nil, err
				}
				return cb.res, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	}
	if strings.HasPrefix(c.ClientID, "https://") {
		cfg.ClientIDMetadataDocumentConfig = &auth.ClientIDMetadataDocumentConfig{URL: c.ClientID}
	} else {
		cfg.PreregisteredClient = &oauthex.ClientCredentials{ClientID: c.ClientID}
	}
	h, err := auth.NewAuthorizationCodeHandler(cfg)
	if err != nil {
		return err
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpsts-example-person-client", Version: "1.0.0"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: c.Server, HTTPClient: c.HTTPClient, OAuthHandler: h, MaxRetries: -1}, nil)
	if err := refused(); err != nil {
		return err
	}
	if err != nil {
		return err
	}
	defer cs.Close()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		return err
	}
	for _, t := range tools.Tools {
		fmt.Fprintf(c.Out, "tool %s: %s\n", t.Name, t.Description)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: c.Tool, Arguments: c.Args})
	if err := refused(); err != nil {
		return err
	}
	if err != nil {
		return err
	}
	for _, content := range res.Content {
		if t, ok := content.(*mcp.TextContent); ok {
			fmt.Fprintf(c.Out, "%s: %s\n", c.Tool, t.Text)
		}
	}
	if res.IsError {
		return fmt.Errorf("%s failed", c.Tool)
	}
	return nil
}
