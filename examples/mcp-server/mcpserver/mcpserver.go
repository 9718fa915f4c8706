// Package mcpserver holds two small MCP servers built on the official MCP
// Go SDK and protected by mcpsts's resource package: "files", whose tools
// need different scopes, and "audit", which files calls on its caller's
// behalf through resource.Delegate (never by forwarding the caller's
// token).
package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"

	"github.com/mcpsts/mcpsts/resource"
	"github.com/mcpsts/mcpsts/resource/mcpgo"
)

// Scopes of the example servers.
const (
	ScopeRead   = "files:read"
	ScopeWrite  = "files:write"
	ScopeRecord = "audit:record"
)

// FilesToolScopes are the scopes each files tool needs; give them to
// resource.Config.ToolScopes.
var FilesToolScopes = map[string][]string{
	"read_file":    {ScopeRead},
	"write_file":   {ScopeWrite},
	"read_audited": {ScopeRead, ScopeRecord},
}

// FilesFirstScopes are what a first call needs: give them to
// resource.Config.FirstScopes, so a person consents to files:write only
// when a call writes (the 403 insufficient_scope step-up).
var FilesFirstScopes = []string{ScopeRead}

// AuditToolScopes are the scopes each audit tool needs.
var AuditToolScopes = map[string][]string{"record": {ScopeRecord}}

// FilesImplies: whoever may write may read.
var FilesImplies = map[string][]string{ScopeWrite: {ScopeRead}}

// Caller is what the audit server records of a call: the verified claims
// it acted on.
type Caller struct {
	Subject  string   `json:"subject"`
	ClientID string   `json:"client_id"`
	Actors   []string `json:"actors,omitempty"` // current actor first
	Note     string   `json:"note,omitempty"`
}

type fileArgs struct {
	Name    string `json:"name" jsonschema:"the file's name"`
	Content string `json:"content,omitempty" jsonschema:"what to write"`
}

// Files returns the files server's HTTP handler: the MCP endpoint at the
// resource's path and its protected resource metadata. audit is the audit
// server's resource URI; client carries the calls to it.
func Files(rs *resource.Server, audit string, client *http.Client) http.Handler {
	var mu sync.Mutex
	files := map[string]string{"readme.txt": "hello from the files server"}
	srv := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1.0.0"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "read_file", Description: "Reads a file (files:read)."},
		func(_ context.Context, _ *mcp.CallToolRequest, in fileArgs) (*mcp.CallToolResult, any, error) {
			mu.Lock()
			defer mu.Unlock()
			c, ok := files[in.Name]
			if !ok {
				return nil, nil, fmt.Errorf("no file %q", in.Name)
			}
			return text(c), nil, nil
		})
	mcp.AddTool(srv, &mcp.Tool{Name: "write_file", Description: "Writes a file (files:write)."},
		func(_ context.Context, _ *mcp.CallToolRequest, in fileArgs) (*mcp.CallToolResult, any, error) {
			mu.Lock()
			defer mu.Unlock()
			files[in.Name] = in.Content
			return text("written"), nil, nil
		})
	mcp.AddTool(srv, &mcp.Tool{Name: "read_audited", Description: "Reads a file after recording the read at the audit server, on the caller's behalf (files:read, audit:record)."},
		func(ctx context.Context, req *mcp.CallToolRequest, in fileArgs) (*mcp.CallToolResult, any, error) {
			// The caller's token stays here: the audit server gets a new
			// token from the broker naming this server as the actor.
			tok, err := resource.Delegate(mcpgo.Context(ctx, req.Extra), audit, ScopeRecord)
			if err != nil {
				return nil, nil, err
			}
			rec, err := CallTool(ctx, client, audit, tok, "record", map[string]any{"note": "read " + in.Name})
			if err != nil {
				return nil, nil, fmt.Errorf("audit: %w", err)
			}
			return text(rec), nil, nil
		})
	return handler(rs, srv)
}

// Audit returns the audit server's HTTP handler. Its one tool, record,
// answers with the verified caller it acted on, as JSON.
func Audit(rs *resource.Server) http.Handler {
	srv := mcp.NewServer(&mcp.Implementation{Name: "audit", Version: "1.0.0"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "record", Description: "Records an access (audit:record)."},
		func(_ context.Context, req *mcp.CallToolRequest, in struct {
			Note string `json:"note"`
		}) (*mcp.CallToolResult, any, error) {
			c, ok := mcpgo.Caller(req.Extra)
			if !ok {
				return nil, nil, errors.New("no verified caller")
			}
			b, _ := json.Marshal(Caller{Subject: c.Claims.Subject, ClientID: c.Claims.ClientID, Actors: c.Claims.Chain(), Note: in.Note})
			return text(string(b)), nil, nil
		})
	return handler(rs, srv)
}

func handler(rs *resource.Server, srv *mcp.Server) http.Handler {
	mux := http.NewServeMux()
	rs.Mount(mux, mcpgo.Handler(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)))
	return mux
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

// CallTool connects to the MCP server at url with the go-sdk's Streamable
// HTTP client, sending tok on every request, calls tool with args and
// returns its text.
func CallTool(ctx context.Context, client *http.Client, url string, tok *oauth2.Token, tool string, args map[string]any) (string, error) {
	cs, err := Connect(ctx, client, url, tok)
	if err != nil {
		return "", err
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return "", err
	}
	var out []string
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			out = append(out, t.Text)
		}
	}
	if res.IsError {
		return "", errors.New(strings.Join(out, "\n"))
	}
	return strings.Join(out, "\n"), nil
}

// Connect opens an MCP client session to url with the go-sdk, sending tok
// as the bearer token; client's transport trusts the server.
func Connect(ctx context.Context, client *http.Client, url string, tok *oauth2.Token) (*mcp.ClientSession, error) {
	return ConnectClient(ctx, &http.Client{Transport: &oauth2.Transport{Source: oauth2.StaticTokenSource(tok), Base: client.Transport}}, url)
}

// ConnectClient opens an MCP client session to url with the go-sdk over hc,
// whose transport authorizes the requests (a dpop.Transport, say).
func ConnectClient(ctx context.Context, hc *http.Client, url string) (*mcp.ClientSession, error) {
	c := mcp.NewClient(&mcp.Implementation{Name: "mcpsts-example-client", Version: "1.0.0"}, nil)
	return c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc, MaxRetries: -1}, nil)
}
