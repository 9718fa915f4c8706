package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpsts/mcpsts/federation/federationtest"
)

type tokenTransport struct {
	token string
	base  http.RoundTripper
}

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.base.RoundTrip(r)
}

// TestGatewayCommand: `mcpsts gateway` in front of an MCP server that knows
// nothing of tokens (the Go SDK's, plain http on loopback), with a token
// the broker issued for the gateway's URL: the Go SDK client lists and
// calls tools through it; the upstream never sees the token and reads the
// caller from the gateway's headers; no token is 401; /readyz is ready.
func TestGatewayCommand(t *testing.T) {
	// The MCP server behind the gateway.
	var mu sync.Mutex
	var seen []http.Header
	s := mcp.NewServer(&mcp.Implementation{Name: "plain", Version: "1.0.0"}, nil)
	type in struct {
		Text string `json:"text"`
	}
	mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(ctx context.Context, req *mcp.CallToolRequest, a in) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: a.Text}}}, nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	defer up.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resourceURL := "https://" + ln.Addr().String() + "/mcp"
	idp := federationtest.NewIssuer(t)
	idpCA := filepath.Join(t.TempDir(), "idp.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	broker, brokerCA := serveBroker(t, `id: agent
match: {provider: ci, subject: agent}
grant: {client_id: agent, audiences: ["`+resourceURL+`"], scopes: [files:read]}
`, fmt.Sprintf(`providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}`, idp.URL, idpCA))
	cert, key, gwCA := productionFiles(t)

	e := testEnv(nil)
	e.listener = handOver(ln.Addr().String(), ln)
	root := newRootCommand(e)
	var out, errOut syncBuffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"gateway", "--listen", ln.Addr().String(), "--resource", resourceURL, "--broker", broker, "--broker-ca", brokerCA,
		"--upstream", up.URL + "/mcp", "--cert", cert, "--key", key})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "mcpsts gateway {"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no banner:\n%s\n%s", out.String(), errOut.String())
		}
	}

	// A token for the gateway's URL, from the broker.
	bc := clientTrusting(t, brokerCA)
	n := time.Now().Unix()
	resp, err := bc.PostForm(broker+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "resource": {resourceURL},
		"subject_token":      {idp.Sign(map[string]any{"iss": idp.URL, "sub": "agent", "aud": broker, "iat": n, "exp": n + 300}, nil)},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if tok.AccessToken == "" {
		t.Fatalf("no token: %d", resp.StatusCode)
	}

	pem, _ := os.ReadFile(gwCA)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	c := mcp.NewClient(&mcp.Implementation{Name: "through-gateway", Version: "1.0.0"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: resourceURL, HTTPClient: &http.Client{Transport: tokenTransport{tok.AccessToken, tr}}, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, errOut.String())
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "through"}})
	if err != nil || res.Content[0].(*mcp.TextContent).Text != "through" {
		t.Fatalf("echo: %v %v", res, err)
	}
	mu.Lock()
	for _, h := range seen {
		if h.Get("Authorization") != "" || h.Get("X-Mcpsts-Subject") != "workload:ci/agent" || h.Get("X-Mcpsts-Client-Id") != "agent" {
			t.Errorf("the upstream saw %v", h)
		}
	}
	mu.Unlock()
	hc := &http.Client{Transport: tr}
	r, err := hc.Post(resourceURL, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if err != nil || r.StatusCode != 401 || r.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("no token: %v %v", r, err)
	}
	r.Body.Close()
	r, err = hc.Get("https://" + ln.Addr().String() + "/readyz")
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", r, err)
	}
	r.Body.Close()
}
