package mcpgo_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"

	"github.com/mcpsts/mcpsts/issuer/issuertest"
	"github.com/mcpsts/mcpsts/resource"
	"github.com/mcpsts/mcpsts/resource/mcpgo"
)

// An MCP server on the MCP Go SDK behind resource: the SDK's Streamable
// HTTP handler sits behind the middleware through mcpgo.Handler, and a tool
// handler reads the verified caller with mcpgo.Caller. The client here is
// the SDK's own, sending a broker token.
func Example() {
	broker, _ := issuertest.New("https://sts.example.com")
	ts := httptest.NewUnstartedServer(nil)
	url := "https://" + ts.Listener.Addr().String() + "/mcp"
	rs, err := resource.New(resource.Config{Resource: url, Issuer: broker.URL, Keys: broker})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := mcp.NewServer(&mcp.Implementation{Name: "whoami", Version: "1.0.0"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "whoami", Description: "Says who calls."},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			c, ok := mcpgo.Caller(req.Extra)
			if !ok {
				return nil, nil, errors.New("no verified caller")
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: c.Claims.Subject + " via " + c.Claims.ClientID}}}, nil, nil
		})
	mux := http.NewServeMux()
	rs.Mount(mux, mcpgo.Handler(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)), "mcp:connect")
	ts.Config.Handler = mux
	ts.StartTLS()
	defer ts.Close()

	tok, _ := broker.Token(url, "agent", "k8s/system:serviceaccount:apps:agent", "mcp:connect")
	hc := &http.Client{Transport: &oauth2.Transport{Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok}), Base: ts.Client().Transport}}
	ctx := context.Background()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "example", Version: "1.0.0"}, nil).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc, MaxRetries: -1}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Content[0].(*mcp.TextContent).Text)
	// Output: workload:k8s/system:serviceaccount:apps:agent via agent
}
