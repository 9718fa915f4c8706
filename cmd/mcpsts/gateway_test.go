package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpsts/mcpsts/federation/federationtest"
	broker "github.com/mcpsts/mcpsts/internal/server"
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

// gatewayFixture is `mcpsts gateway` (in process, on its own listener) in
// front of an upstream, with a broker that issues tokens for its URL.
type gatewayFixture struct {
	idp      *federationtest.Issuer
	broker   string
	resource string
	tr       *http.Transport // trusts the gateway
	errOut   *syncBuffer
	token    func(t *testing.T, audience string, scopes ...string) string
	// brokerClient trusts the broker.
	brokerClient *http.Client
}

func startGateway(t *testing.T, upstream string, extra ...string) *gatewayFixture {
	t.Helper()
	return startGatewayWith(t, upstream, brokerAdditions{}, extra...)
}

// brokerAdditions are trust maps and configuration sections the broker of
// a gateway fixture serves besides its own; RESOURCE in them is replaced
// by the gateway's URL.
type brokerAdditions struct {
	maps, config string
	files        map[string]string // files the gateway reads, written before it starts (RESOURCE replaced too)
}

func startGatewayWith(t *testing.T, upstream string, add brokerAdditions, extra ...string) *gatewayFixture {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &gatewayFixture{resource: "https://" + ln.Addr().String() + "/mcp", errOut: &syncBuffer{}}
	idp := federationtest.NewIssuer(t)
	f.idp = idp
	idpCA := filepath.Join(t.TempDir(), "idp.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	broker, brokerCA := serveBroker(t, `id: agent
match: {provider: ci, subject: agent}
grant:
  client_id: agent
  audiences: ["`+f.resource+`", "https://other.example.com/mcp", "https://upstream.internal/mcp"]
  scopes: [files:read, files:write]
  default_scopes: [files:read]
  may_act: [{provider: ci, subject: gateway}]
`+strings.ReplaceAll(add.maps, "RESOURCE", f.resource), fmt.Sprintf(`providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}`, idp.URL, idpCA)+strings.ReplaceAll(add.config, "RESOURCE", f.resource))
	for path, content := range add.files {
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(content, "RESOURCE", f.resource)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, key, gwCA := productionFiles(t)
	f.broker = broker
	e := testEnv(nil)
	e.listener = handOver(ln.Addr().String(), ln)
	root := newRootCommand(e)
	var out syncBuffer
	root.SetOut(&out)
	root.SetErr(f.errOut)
	root.SetArgs(append([]string{"gateway", "--listen", ln.Addr().String(), "--resource", f.resource, "--broker", broker, "--broker-ca", brokerCA,
		"--upstream", upstream, "--cert", cert, "--key", key}, extra...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "mcpsts gateway {"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no banner:\n%s\n%s", out.String(), f.errOut.String())
		}
	}
	pem, _ := os.ReadFile(gwCA)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	f.tr = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	bc := clientTrusting(t, brokerCA)
	f.brokerClient = bc
	f.token = func(t *testing.T, audience string, scopes ...string) string {
		t.Helper()
		return f.tokenFor(t, "agent", audience, nil, scopes...)
	}
	return f
}

// tokenFor gets a token for the workload sub of the fixture's IdP at
// audience, its request changed by mut (a DPoP proof).
func (f *gatewayFixture) tokenFor(t *testing.T, sub, audience string, mut func(*http.Request), scopes ...string) string {
	t.Helper()
	{
		idp, broker, bc := f.idp, f.broker, f.brokerClient
		n := time.Now().Unix()
		form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "resource": {audience},
			"subject_token":      {idp.Sign(map[string]any{"iss": idp.URL, "sub": sub, "aud": broker, "iat": n, "exp": n + 300}, nil)},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}}
		if len(scopes) > 0 {
			form.Set("scope", strings.Join(scopes, " "))
		}
		req, _ := http.NewRequest(http.MethodPost, broker+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if mut != nil {
			mut(req)
		}
		resp, err := bc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&tok)
		if tok.AccessToken == "" {
			t.Fatalf("no token: %d", resp.StatusCode)
		}
		return tok.AccessToken
	}
}

// connect is the Go SDK client through the gateway with tok.
func (f *gatewayFixture) connect(t *testing.T, ctx context.Context, tok string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "through-gateway", Version: "1.0.0"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: f.resource, HTTPClient: &http.Client{Transport: tokenTransport{tok, f.tr}}, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, f.errOut.String())
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// post sends one JSON-RPC message to the gateway, outside any SDK.
func (f *gatewayFixture) post(t *testing.T, path, tok, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, strings.TrimSuffix(f.resource, "/mcp")+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := (&http.Client{Transport: f.tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// TestGatewayCommand: `mcpsts gateway` in front of an MCP server that knows
// nothing of tokens (the Go SDK's, plain http on loopback), with a token
// the broker issued for the gateway's URL: the Go SDK client calls a tool
// through it; the upstream never sees the token and reads the caller from
// the gateway's headers; no token is 401; /readyz is ready.
func TestGatewayCommand(t *testing.T) {
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
	t.Cleanup(up.Close) // last: after the client and the gateway have closed their streams
	dir := t.TempDir()
	toolScopes, auditFile := filepath.Join(dir, "tool-scopes.yaml"), filepath.Join(dir, "gateway-audit.log")
	os.WriteFile(toolScopes, []byte("echo: []\n"), 0o600)
	gwConfig := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(gwConfig, []byte("audit: {repeat_interval: 1s, max_size: 64KiB, max_files: 3}\n"), 0o600)
	f := startGateway(t, up.URL+"/mcp", "--config", gwConfig, "--tool-scopes", toolScopes, "--audit-log", auditFile)
	ctx := context.Background()
	cs := f.connect(t, ctx, f.token(t, f.resource))
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
	if status, ch := f.post(t, "/mcp", "", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`); status != 401 || !strings.Contains(ch, "resource_metadata=") {
		t.Fatalf("no token: %d %q", status, ch)
	}
	r, err := (&http.Client{Transport: f.tr}).Get(strings.TrimSuffix(f.resource, "/mcp") + "/readyz")
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", r, err)
	}
	r.Body.Close()

	// The tool scopes change on disk: echo now needs files:write, without
	// a restart.
	reader := f.token(t, f.resource, "files:read")
	echo := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`
	os.WriteFile(toolScopes, []byte("echo: [files:write]\n"), 0o600)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if status, ch := f.post(t, "/mcp", reader, echo); status == 403 && strings.Contains(ch, `scope="files:write"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new tool scopes are not in force after 10s:\n%s", f.errOut.String())
		}
	}
	// Each refusal at the edge is an audit line; the chain verifies.
	var data []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if data, _ = os.ReadFile(auditFile); strings.Count(string(data), `"event":"gateway.refuse"`) >= 2 {
			break
		}
	}
	if !strings.Contains(string(data), `"http.status":401`) || !strings.Contains(string(data), `"http.status":403`) || strings.Contains(string(data), reader) {
		t.Fatalf("the gateway's audit log:\n%s", data)
	}
	// A flood of refusals (issue 32): of each kind, the first of an
	// interval is written (and logged), the others counted in one
	// audit.repeated line; every one is accounted for.
	for range 30 {
		if status, _ := f.post(t, "/mcp", "", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`); status != 401 {
			t.Fatalf("no token: %d", status)
		}
	}
	written, counted := 0, 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && written+counted != 31; time.Sleep(100 * time.Millisecond) {
		data, _ = os.ReadFile(auditFile)
		written, counted = 0, 0
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var rec map[string]any
			json.Unmarshal([]byte(line), &rec)
			switch {
			case rec["event"] == "gateway.refuse" && rec["http.status"] == 401.0:
				written++
			case rec["event"] == "audit.repeated" && rec["repeated.event"] == "gateway.refuse" && rec["http.status"] == 401.0:
				n, _ := rec["repeated.count"].(float64)
				counted += int(n)
			}
		}
	}
	if written+counted != 31 || written > 6 {
		t.Fatalf("31 requests without a token: %d lines written, %d counted (want all 31 accounted for, few written):\n%s", written, counted, data)
	}
	if n := strings.Count(f.errOut.String(), "request refused"); n > written+1 {
		t.Errorf("%d log lines of refusals for %d written", n, written)
	}
	if out, _, err := run(t, testEnv(nil), "audit", "verify", auditFile); err != nil || !strings.Contains(out, "chain intact") {
		t.Fatalf("audit verify: %q %v", out, err)
	}
}

// TestGatewayWithTypeScriptServer: an MCP server on the TypeScript SDK
// (@modelcontextprotocol/sdk 1.32, examples/mcp-server/ts-client/
// upstream-server.mjs) behind the gateway, called by the Go SDK client with
// a token from the broker: tools listed and called, the caller known to
// the server from the gateway's headers; a token for another audience 401,
// a missing tool scope 403 with the challenge, a token in the query 400;
// the server never sees an Authorization header.
func TestGatewayWithTypeScriptServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port, lines := startTSUpstream(t, ctx)
	toolScopes := filepath.Join(t.TempDir(), "tool-scopes.yaml")
	os.WriteFile(toolScopes, []byte("write_file: [files:write]\n"), 0o600)
	f := startGateway(t, "http://127.0.0.1:"+port+"/mcp", "--tool-scopes", toolScopes)

	reader := f.token(t, f.resource, "files:read")
	cs := f.connect(t, ctx, reader)
	tools, err := cs.ListTools(ctx, nil)
	if err != nil || len(tools.Tools) != 2 {
		t.Fatalf("tools: %v %v", tools, err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil || res.Content[0].(*mcp.TextContent).Text != "subject=workload:ci/agent client=agent authorization=absent" {
		t.Fatalf("whoami: %v %v", res, err)
	}
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"write_file","arguments":{"name":"x"}}}`
	if status, ch := f.post(t, "/mcp", reader, call); status != 403 || !strings.Contains(ch, `error="insufficient_scope"`) || !strings.Contains(ch, `scope="files:write"`) {
		t.Fatalf("a tool beyond the token's scopes: %d %q", status, ch)
	}
	if status, ch := f.post(t, "/mcp", f.token(t, "https://other.example.com/mcp"), call); status != 401 || !strings.Contains(ch, `error="invalid_token"`) {
		t.Fatalf("another server's token: %d %q", status, ch)
	}
	if status, _ := f.post(t, "/mcp?access_token="+reader, "", call); status != 400 {
		t.Fatalf("a token in the query: %d", status)
	}
	cancel()
	n := 0
	for l := range lines {
		if strings.HasPrefix(l, "request ") {
			n++
			if !strings.Contains(l, "authorization=absent") {
				t.Errorf("the TypeScript server saw: %s", l)
			}
		}
	}
	if n == 0 {
		t.Fatal("the TypeScript server logged no request")
	}
}

// startTSUpstream runs examples/mcp-server/ts-client/upstream-server.mjs
// until ctx ends, and returns its port and the lines it prints after the
// first.
func startTSUpstream(t *testing.T, ctx context.Context) (port string, lines chan string) {
	t.Helper()
	node, dir := nodeClient(t, "@modelcontextprotocol/sdk/package.json")
	ctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(ctx, node, "upstream-server.mjs")
	cmd.Dir = dir
	stdout, _ := cmd.StdoutPipe()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	lines = make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		port = strings.TrimPrefix(l, "listening ")
	case <-time.After(20 * time.Second):
		t.Fatalf("the TypeScript server did not start: %s", stderr.String())
	}
	return port, lines
}

// TestGatewayDevWalkthrough is README's gateway walk-through on serve
// --dev: the TypeScript upstream, the gateway with --broker-ca
// .mcpsts/ca.pem and the dev certificate at the address the sample map
// grants (this test's port in its place), a token from mcpsts token --dev,
// a tool called through the gateway.
func TestGatewayDevWalkthrough(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port, _ := startTSUpstream(t, ctx)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resource := "https://" + ln.Addr().String() + "/mcp"
	data := filepath.Join(t.TempDir(), ".mcpsts")
	os.MkdirAll(filepath.Join(data, "trustmaps"), 0o700)
	os.WriteFile(filepath.Join(data, "trustmaps", broker.DevDemoMapFile), []byte(broker.DevDemoMapFor(resource)), 0o600)
	startServe(t, devEnv, "--dev", "--data", data, "--listen", "127.0.0.1:0")
	issuer, _ := os.ReadFile(filepath.Join(data, "issuer"))

	e := testEnv(nil)
	e.listener = handOver(ln.Addr().String(), ln)
	root := newRootCommand(e)
	var out, errOut syncBuffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"gateway", "--listen", ln.Addr().String(), "--resource", resource, "--broker", strings.TrimSpace(string(issuer)),
		"--broker-ca", filepath.Join(data, "ca.pem"), "--upstream", "http://127.0.0.1:" + port + "/mcp",
		"--cert", filepath.Join(data, "server.pem"), "--key", filepath.Join(data, "server-key.pem")})
	gctx, gcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(gctx) }()
	t.Cleanup(func() { gcancel(); <-done })
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "mcpsts gateway {"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no banner:\n%s\n%s", out.String(), errOut.String())
		}
	}
	tok, _, err := run(t, devEnv, "token", "--dev", "--data", data, "--audience", resource)
	if err != nil {
		t.Fatal(err)
	}
	f := &gatewayFixture{resource: resource, errOut: &errOut, tr: clientTrusting(t, filepath.Join(data, "ca.pem")).Transport.(*http.Transport)}
	cs := f.connect(t, ctx, strings.TrimSpace(tok))
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil || res.Content[0].(*mcp.TextContent).Text != "subject=workload:dev/demo-agent client=demo-agent authorization=absent" {
		t.Fatalf("whoami through the gateway: %v %v\n%s", res, err, errOut.String())
	}
}

// TestGatewayDelegationCommand: with --upstream-audience, an upstream that
// verifies JWTs itself gets a token for its own audience, obtained by a
// delegation exchange with the gateway's own workload credential: the
// caller as sub, the gateway in act; never the caller's token.
func TestGatewayDelegationCommand(t *testing.T) {
	var mu sync.Mutex
	var auths []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization")+"|"+r.Header.Get("X-Mcpsts-Subject"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	t.Cleanup(up.Close)
	credential := filepath.Join(t.TempDir(), "gateway-token")
	f := startGateway(t, up.URL+"/mcp", "--upstream-audience", "https://upstream.internal/mcp", "--token-source", "file:"+credential)
	n := time.Now().Unix()
	os.WriteFile(credential, []byte(f.idp.Sign(map[string]any{"iss": f.idp.URL, "sub": "gateway", "aud": f.broker, "iat": n, "exp": n + 600}, nil)), 0o600)
	caller := f.token(t, f.resource, "files:read")
	if status, _ := f.post(t, "/mcp", caller, `{"jsonrpc":"2.0","id":1,"method":"ping"}`); status != 200 {
		t.Fatalf("through the gateway: %d\n%s", status, f.errOut.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(auths) != 1 {
		t.Fatalf("the upstream saw %v", auths)
	}
	bearer, subject, _ := strings.Cut(auths[0], "|")
	tok := strings.TrimPrefix(bearer, "Bearer ")
	if subject != "" || tok == bearer || tok == caller {
		t.Fatalf("the upstream saw %q (subject header %q)", bearer, subject)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	var claims struct {
		Aud string `json:"aud"`
		Sub string `json:"sub"`
		Act struct {
			Sub string `json:"sub"`
		} `json:"act"`
	}
	json.Unmarshal(payload, &claims)
	if claims.Aud != "https://upstream.internal/mcp" || claims.Sub != "workload:ci/agent" || claims.Act.Sub != "workload:ci/gateway" {
		t.Fatalf("the upstream's token: %s", payload)
	}
}

// TestGatewayAcceptsWhatTheBrokerIssues (finding 1 and item 3 of the
// decision review): `mcpsts gateway --introspection-source` refuses a token
// revoked at the broker and takes a single-use token once; with its default
// --dpop accept it takes a DPoP-bound token with its proof and refuses it
// as a bearer token. Each against the real broker and the shipped command.
func TestGatewayAcceptsWhatTheBrokerIssues(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`)
	}))
	t.Cleanup(up.Close)
	// The gateway's own workload credential, written before the fixture
	// knows the broker's URL: the fixture's IdP signs it below.
	credential := filepath.Join(t.TempDir(), "gateway.jwt")
	os.WriteFile(credential, []byte("not yet"), 0o600)
	f := startGatewayWith(t, up.URL+"/mcp", brokerAdditions{
		maps: `---
id: once
match: {provider: ci, subject: once}
grant: {client_id: once, audiences: ["RESOURCE"], scopes: [files:read], single_use: true}
---
id: dpop-agent
match: {provider: ci, subject: dpop-agent}
grant: {client_id: dpop-agent, audiences: ["RESOURCE"], scopes: [files:read], require_binding: dpop}
`,
		config: `
introspection:
  callers: [{provider: ci, subject: gateway, audiences: ["RESOURCE"]}]`,
	}, "--introspection-source", "file:"+credential)
	n := time.Now().Unix()
	os.WriteFile(credential, []byte(f.idp.Sign(map[string]any{"iss": f.idp.URL, "sub": "gateway", "aud": f.broker, "iat": n, "exp": n + 600}, nil)), 0o600)

	call := func(scheme, tok, proof string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, f.resource, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", scheme+" "+tok)
		if proof != "" {
			req.Header.Set("DPoP", proof)
		}
		resp, err := (&http.Client{Transport: f.tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := call("Bearer", f.token(t, f.resource), ""); got != 200 {
		t.Fatalf("a valid token: %d\n%s", got, f.errOut.String())
	}

	edgeAcceptance(t, edgeUnderTest{
		call: call, broker: f.broker, resource: f.resource,
		token: func(sub string, mut func(*http.Request)) string { return f.tokenFor(t, sub, f.resource, mut) },
		revoke: func(tok, owner string) {
			n := time.Now().Unix()
			revokeAt(t, f.brokerClient, f.broker, tok, f.idp.Sign(map[string]any{"iss": f.idp.URL, "sub": owner, "aud": f.broker, "iat": n, "exp": n + 300}, nil))
		},
	})
}

// TestGatewayCommandBodyBound: the bound the gateway command sets on a
// request body (4 MiB) holds: one byte over it is 413 at the edge and the
// upstream is never asked; at the bound the request goes through.
func TestGatewayCommandBodyBound(t *testing.T) {
	var asked sync.Map
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		asked.Store(n, true)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	t.Cleanup(up.Close)
	f := startGateway(t, up.URL+"/mcp")
	tok := f.token(t, f.resource)
	send := func(size int) int {
		t.Helper()
		prefix := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"pad":"`
		body := prefix + strings.Repeat("x", size-len(prefix)-3) + `"}}`
		req, _ := http.NewRequest(http.MethodPost, f.resource, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := (&http.Client{Transport: f.tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const bound = 4 << 20
	if got := send(bound + 1); got != http.StatusRequestEntityTooLarge {
		t.Fatalf("one byte over the bound: %d, want 413", got)
	}
	if _, ok := asked.Load(int64(bound + 1)); ok {
		t.Fatal("the upstream was asked with a body over the bound")
	}
	if got := send(bound); got != 200 {
		t.Fatalf("a body at the bound: %d, want 200", got)
	}
	if _, ok := asked.Load(int64(bound)); !ok {
		t.Fatal("the upstream never saw the body at the bound")
	}
}

// TestGatewayBrokerCA: a gateway that does not trust the broker's
// certificate would run and refuse every request (its keys never load):
// it stops at once and names --broker-ca.
func TestGatewayBrokerCA(t *testing.T) {
	broker, _ := serveBroker(t, "id: x\nmatch: {provider: ci, subject: x}\ngrant: {client_id: x, audiences: [\"https://127.0.0.1:1/mcp\"]}\n", "")
	cert, key, otherCA := productionFiles(t)
	for _, tc := range []struct {
		name string
		ca   []string
	}{
		{"no --broker-ca (the system roots)", nil},
		{"another CA", []string{"--broker-ca", otherCA}},
	} {
		args := append([]string{"gateway", "--listen", "127.0.0.1:0", "--resource", "https://127.0.0.1:1/mcp", "--broker", broker,
			"--upstream", "http://127.0.0.1:1/mcp", "--cert", cert, "--key", key}, tc.ca...)
		_, _, err := run(t, testEnv(nil), args...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exitConfig || !strings.Contains(err.Error(), "its certificate is not signed by a CA this gateway trusts") ||
			!strings.Contains(err.Error(), "give the broker's CA with --broker-ca FILE") {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestGatewayAuditSettings: the gateway's audit section is checked by the
// broker's rules, every problem named with the file.
func TestGatewayAuditSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(file, []byte("audit: {max_files: -1, repeat_interval: 2h, max_size: 1KiB, replay_attributes: [x]}\n"), 0o600)
	_, _, err := run(t, testEnv(nil), "gateway", "--config", file)
	for _, want := range []string{
		file + ": audit.max_files: -1 is out of range",
		file + ": audit.repeat_interval: 2h0m0s is out of range",
		file + ": audit.max_size: 1024 bytes is too small",
		file + ": audit.file, replay_attributes: not here",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nwant %q", err, want)
		}
	}
}

// TestGatewayToolPolicy (issue 33): `mcpsts gateway --tool-policy` in front
// of an MCP server that knows nothing of policies (the Go SDK's), called
// by the unmodified Go SDK client: a call the policy allows runs, one it
// denies is the tool's error with the policy's reason (the upstream never
// sees it), one to step up is the 403 challenge; arguments that could be
// read two ways are refused before the upstream.
func TestGatewayToolPolicy(t *testing.T) {
	var ran atomic.Int64
	s := mcp.NewServer(&mcp.Implementation{Name: "plain", Version: "1.0.0"}, nil)
	type in struct {
		Text string `json:"text"`
	}
	mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(ctx context.Context, req *mcp.CallToolRequest, a in) (*mcp.CallToolResult, any, error) {
		ran.Add(1)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: a.Text}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "admin"}, func(ctx context.Context, req *mcp.CallToolRequest, a in) (*mcp.CallToolResult, any, error) {
		ran.Add(1)
		return &mcp.CallToolResult{}, nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	up := httptest.NewServer(h)
	t.Cleanup(up.Close)
	policy, auditFile := filepath.Join(t.TempDir(), "policy.yaml"), filepath.Join(t.TempDir(), "gateway-audit.log")
	f := startGatewayWith(t, up.URL+"/mcp", brokerAdditions{files: map[string]string{policy: `server: RESOURCE
tools_without_rules: deny
rules:
  - id: loud
    tools: [echo]
    when: ['args.text.startsWith("!")']
    effect: step_up
    scopes: [files:write]
  - id: no-secrets
    tools: [echo]
    when: ['args.text.contains("secret")']
    effect: deny
    reason: the echo tool does not repeat secrets
  - id: echo
    tools: [echo]
    effect: allow
`}}, "--tool-policy", policy, "--audit-log", auditFile)
	ctx := context.Background()
	tok := f.token(t, f.resource, "files:read")
	cs := f.connect(t, ctx, tok)
	// tools/list (an event stream from the Go SDK's server) shows only
	// what some call could be allowed for: admin, which no rule names
	// under tools_without_rules: deny, is hidden.
	tools, err := cs.ListTools(ctx, nil)
	if err != nil || len(tools.Tools) != 1 || tools.Tools[0].Name != "echo" {
		t.Fatalf("tools/list: %+v %v", tools, err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hello"}})
	if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != "hello" {
		t.Fatalf("an allowed call: %v %v", res, err)
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "my secret"}})
	if err != nil || !res.IsError || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, "the echo tool does not repeat secrets") {
		t.Fatalf("a denied call: %+v %v", res, err)
	}
	if n := ran.Load(); n != 1 {
		t.Fatalf("the upstream ran %d calls, want the allowed one only", n)
	}
	call := func(args string) string {
		return `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":` + args + `}}`
	}
	if status, ch := f.post(t, "/mcp", tok, call(`{"text":"!now"}`)); status != 403 || !strings.Contains(ch, `scope="files:write"`) {
		t.Fatalf("a call to step up: %d %q", status, ch)
	}
	for _, smuggled := range []string{`{"text":"hi","Text":"my secret"}`, `{"text":"hi","text":"my secret"}`} {
		if status, _ := f.post(t, "/mcp", tok, call(smuggled)); status != 400 {
			t.Fatalf("%s: %d, want 400", smuggled, status)
		}
	}
	if n := ran.Load(); n != 1 {
		t.Fatalf("the upstream ran %d calls", n)
	}
	// Each decision is an audit line with the caller, the rule and the
	// arguments' digest, never the arguments.
	var data []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if data, _ = os.ReadFile(auditFile); strings.Contains(string(data), `"event":"tool.step_up"`) {
			break
		}
	}
	for _, want := range []string{`"event":"tool.allow"`, `"event":"tool.deny"`, `"event":"tool.step_up"`, `"tool.rule":"no-secrets"`,
		`"deny.reason":"the echo tool does not repeat secrets"`, `"subject.id":"workload:ci/agent"`, `"tool.args_sha256":"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the gateway's audit log has no %s:\n%s", want, data)
		}
	}
	if strings.Contains(string(data), "my secret") || strings.Contains(string(data), tok) {
		t.Errorf("the audit log holds a call's arguments or the token:\n%s", data)
	}
}
