package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/examples/mcp-server/mcpserver"
	"github.com/mcpsts/mcpsts/exchange/client"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/resource"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// mcpDeployment is a broker, a fake Kubernetes issuer it trusts as
// provider "ci", and the example files and audit MCP servers, each on its
// own loopback TLS listener.
type mcpDeployment struct {
	broker, brokerCA string
	serverCA         string // signed the MCP servers' certificates
	files, audit     string // resource URIs
	idp              *federationtest.Issuer
	trust            *http.Client // trusts the broker and the MCP servers
}

func (d *mcpDeployment) saToken(t *testing.T, name string) string {
	t.Helper()
	n := time.Now().Unix()
	p := filepath.Join(t.TempDir(), name)
	os.WriteFile(p, []byte(d.idp.Sign(map[string]any{"iss": d.idp.URL, "sub": "system:serviceaccount:apps:" + name, "aud": d.broker, "iat": n, "exp": n + 600}, nil)), 0o600)
	return p
}

func startMCPDeployment(t *testing.T) *mcpDeployment {
	t.Helper()
	d := &mcpDeployment{idp: federationtest.NewIssuer(t)}
	lnFiles, _ := net.Listen("tcp", "127.0.0.1:0")
	lnAudit, _ := net.Listen("tcp", "127.0.0.1:0")
	d.files = "https://" + lnFiles.Addr().String() + "/mcp"
	d.audit = "https://" + lnAudit.Addr().String() + "/mcp"
	idpCA := filepath.Join(t.TempDir(), "idp.pem")
	os.WriteFile(idpCA, d.idp.CAPEM(), 0o600)
	d.broker, d.brokerCA = serveBroker(t, fmt.Sprintf(`id: agent
match: {provider: ci, subject: "system:serviceaccount:apps:agent"}
grant:
  client_id: agent
  audiences: [%q, %q]
  scopes: [files:read, files:write, audit:record]
  default_scopes: [files:read]
  may_act: [{provider: ci, subject: "system:serviceaccount:apps:files"}]
---
id: intruder
match: {provider: ci, subject: "system:serviceaccount:apps:intruder"}
grant: {client_id: intruder, audiences: [%q], scopes: [files:read]}
`, d.files, d.audit, d.files), fmt.Sprintf(`providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}
dpop: {require_nonce: true}`, d.idp.URL, idpCA))

	cert, key, serverCA := productionFiles(t)
	d.serverCA = serverCA
	pool := x509.NewCertPool()
	for _, f := range []string{d.brokerCA, serverCA} {
		pem, _ := os.ReadFile(f)
		pool.AppendCertsFromPEM(pem)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	d.trust = &http.Client{Transport: tr, Timeout: 20 * time.Second}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	serve := func(ln net.Listener, cfg resource.Config, h func(*resource.Server) http.Handler) {
		cfg.Issuer, cfg.Transport = d.broker, tr
		rs, err := resource.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		go rs.Run(ctx)
		srv := &http.Server{Handler: h(rs), TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}}}
		go srv.ServeTLS(ln, "", "")
		t.Cleanup(func() { srv.Close() })
	}
	files, err := client.New(d.broker, client.FileSource{Path: d.saToken(t, "files"), Label: "k8s"}, client.Options{HTTPClient: d.trust})
	if err != nil {
		t.Fatal(err)
	}
	serve(lnFiles, resource.Config{Resource: d.files, ToolScopes: mcpserver.FilesToolScopes, Implies: mcpserver.FilesImplies, Delegator: files, DPoP: &resource.DPoP{}},
		func(rs *resource.Server) http.Handler { return mcpserver.Files(rs, d.audit, d.trust) })
	serve(lnAudit, resource.Config{Resource: d.audit, ToolScopes: mcpserver.AuditToolScopes}, mcpserver.Audit)
	return d
}

// agentToken gets the agent's token with `mcpsts token --source k8s`.
func (d *mcpDeployment) agentToken(t *testing.T, audience string, scopes ...string) *oauth2.Token {
	t.Helper()
	return d.workloadToken(t, "agent", audience, scopes...)
}

func (d *mcpDeployment) workloadToken(t *testing.T, sa, audience string, scopes ...string) *oauth2.Token {
	t.Helper()
	args := []string{"token", "--broker", d.broker, "--ca", d.brokerCA, "--audience", audience, "--source", "k8s"}
	if len(scopes) > 0 {
		args = append(args, "--scope", strings.Join(scopes, " "))
	}
	out, stderr, err := run(t, testEnv(map[string]string{"MCPSTS_K8S_TOKEN_FILE": d.saToken(t, sa)}), args...)
	if err != nil {
		t.Fatalf("mcpsts token: %v (%s)", err, stderr)
	}
	return &oauth2.Token{AccessToken: strings.TrimSpace(out), TokenType: "Bearer"}
}

// post sends one JSON-RPC message to an MCP endpoint with tok, outside any
// SDK, to read the middleware's answer as it is on the wire.
func (d *mcpDeployment) post(t *testing.T, url string, tok *oauth2.Token, body string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := d.trust.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// TestMCPServerWithGoSDK: the MCP Go SDK's Streamable HTTP client calls the
// example server with a token from `mcpsts token`; the middleware refuses
// a token for another server and asks for the missing scope; the files
// server reaches the audit server only through delegation, and the audit
// server sees an act chain naming the files server.
func TestMCPServerWithGoSDK(t *testing.T) {
	d := startMCPDeployment(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	filesMeta := strings.Replace(d.files, "/mcp", "/.well-known/oauth-protected-resource/mcp", 1)

	tok := d.agentToken(t, d.files, "files:read", "audit:record")
	cs, err := mcpserver.Connect(ctx, d.trust, d.files, tok)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil || len(tools.Tools) != 3 {
		t.Fatalf("tools: %v, %v", tools, err)
	}
	got, err := mcpserver.CallTool(ctx, d.trust, d.files, tok, "read_file", map[string]any{"name": "readme.txt"})
	if err != nil || got != "hello from the files server" {
		t.Fatalf("read_file = %q, %v", got, err)
	}

	// B1.11: a session ID is not authentication. Another workload with a
	// valid token of its own cannot use the agent's session.
	intruder := d.workloadToken(t, "intruder", d.files)
	status, _ := d.post(t, d.files, intruder, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_file","arguments":{"name":"readme.txt"}}}`,
		"Mcp-Session-Id", cs.ID(), "Mcp-Protocol-Version", "2025-06-18")
	if status != http.StatusForbidden {
		t.Fatalf("another caller on the agent's session: %d, want 403", status)
	}

	// Delegation: the audit server sees the agent as subject and the files
	// server as the (only) actor.
	got, err = mcpserver.CallTool(ctx, d.trust, d.files, tok, "read_audited", map[string]any{"name": "readme.txt"})
	if err != nil {
		t.Fatal(err)
	}
	var rec mcpserver.Caller
	if err := json.Unmarshal([]byte(got), &rec); err != nil {
		t.Fatalf("%q: %v", got, err)
	}
	want := mcpserver.Caller{Subject: "workload:ci/system:serviceaccount:apps:agent", ClientID: "agent",
		Actors: []string{"workload:ci/system:serviceaccount:apps:files"}, Note: "read readme.txt"}
	if fmt.Sprint(rec) != fmt.Sprint(want) {
		t.Fatalf("audit saw %+v, want %+v", rec, want)
	}

	// Missing scope: 403 insufficient_scope naming every scope the call
	// needs, on the wire and through the SDK.
	call := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"write_file","arguments":{"name":"x","content":"y"}}}`
	status, challenge := d.post(t, d.files, tok, call)
	wantChallenge := `Bearer error="insufficient_scope", error_description="the token lacks a scope this request needs", scope="files:write", resource_metadata="` + filesMeta + `"`
	if status != http.StatusForbidden || challenge != wantChallenge {
		t.Fatalf("write_file without files:write: %d %q", status, challenge)
	}
	if _, err := mcpserver.CallTool(ctx, d.trust, d.files, tok, "write_file", map[string]any{"name": "x", "content": "y"}); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("SDK write_file without files:write: %v", err)
	}
	// Stepping up: a token with files:write writes.
	if got, err := mcpserver.CallTool(ctx, d.trust, d.files, d.agentToken(t, d.files, "files:write"), "write_file", map[string]any{"name": "x", "content": "y"}); err != nil || got != "written" {
		t.Fatalf("write_file with files:write: %q, %v", got, err)
	}

	// A token for the audit server is refused by the files server.
	other := d.agentToken(t, d.audit, "files:read")
	status, challenge = d.post(t, d.files, other, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if status != http.StatusUnauthorized || challenge != `Bearer error="invalid_token", error_description="the token is not for this server (aud)", resource_metadata="`+filesMeta+`"` {
		t.Fatalf("token of another audience: %d %q", status, challenge)
	}
	if _, err := mcpserver.Connect(ctx, d.trust, d.files, other); err == nil {
		t.Fatal("the SDK connected with a token of another audience")
	}
}

// nodeClient finds node and the ts-client directory with the package whose
// file (under node_modules) must be installed; it skips locally without
// them, and fails in CI.
func nodeClient(t *testing.T, pkgFile string) (node, dir string) {
	t.Helper()
	dir, _ = filepath.Abs(filepath.Join("..", "..", "examples", "mcp-server", "ts-client"))
	node, err := exec.LookPath("node")
	if _, serr := os.Stat(filepath.Join(dir, "node_modules", pkgFile)); err != nil || serr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("node or %s is missing (run npm ci in %s): %v %v", pkgFile, dir, err, serr)
		}
		t.Skipf("node or %s is missing (run npm ci in %s)", pkgFile, dir)
	}
	return node, dir
}

// runNode runs a script of the ts-client directory against the deployment
// (MCP_URL BROKER_ISSUER the agent's service-account token file, client
// agent), trusting the broker's and the servers' CAs, and returns its
// output; it fails the test if the script fails.
func (d *mcpDeployment) runNode(t *testing.T, node, dir, script string) (stdout, stderr string) {
	t.Helper()
	cas := filepath.Join(t.TempDir(), "cas.pem")
	var pems []byte
	for _, f := range []string{d.brokerCA, d.serverCA} {
		b, _ := os.ReadFile(f)
		pems = append(pems, b...)
	}
	os.WriteFile(cas, pems, 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, d.files, d.broker, d.saToken(t, "agent"), "agent")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+cas)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\nstdout: %s\nstderr: %s", script, err, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

// TestMCPServerWithTypeScriptSDK: a Node client on the official TypeScript
// SDK (@modelcontextprotocol/sdk 1.32) discovers mcpsts from the example
// server's 401, gets a token with client credentials authenticated by
// private_key_jwt (its assertion a Kubernetes service-account token), then
// lists the tools and calls one. .ci/run installs the SDK (npm ci); without
// it the test is skipped locally and fails in CI.
func TestMCPServerWithTypeScriptSDK(t *testing.T) {
	node, dir := nodeClient(t, "@modelcontextprotocol/sdk/package.json")
	d := startMCPDeployment(t)
	stdout, stderr := d.runNode(t, node, dir, "client.mjs")
	var out struct {
		Tools      []string `json:"tools"`
		ReadFile   string   `json:"read_file"`
		IsError    bool     `json:"is_error"`
		TokenScope string   `json:"token_scope"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("%q: %v (stderr %s)", stdout, err, stderr)
	}
	if strings.Join(out.Tools, ",") != "read_audited,read_file,write_file" || out.ReadFile != "hello from the files server" || out.IsError {
		t.Fatalf("node client saw %+v (stderr %s)", out, stderr)
	}
	t.Logf("TypeScript SDK token scope: %q", out.TokenScope)
}

// TestMCPServerWithDPoP: `mcpsts token --dpop` gets a DPoP-bound token,
// which an MCP Go SDK client calls the example server with through
// dpop.Transport (a proof per request); the same token as Bearer is
// refused.
func TestMCPServerWithDPoP(t *testing.T) {
	d := startMCPDeployment(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	keyFile := filepath.Join(t.TempDir(), "agent-dpop.pem")
	env := testEnv(map[string]string{"MCPSTS_K8S_TOKEN_FILE": d.saToken(t, "agent")})
	base := []string{"token", "--broker", d.broker, "--ca", d.brokerCA, "--audience", d.files, "--source", "k8s", "--dpop"}
	out, stderr, err := run(t, env, append(base, "--dpop-key", keyFile, "--json")...)
	if err != nil {
		t.Fatalf("mcpsts token --dpop: %v (%s)", err, stderr)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	json.Unmarshal([]byte(out), &tok)
	key, err := dpop.ReadKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(keyFile); fi.Mode().Perm() != 0o600 || tok.TokenType != "DPoP" {
		t.Fatalf("key file mode %v, token type %q", fi.Mode().Perm(), tok.TokenType)
	}
	signer, _ := dpop.NewSigner(key, nil)
	hc := &http.Client{Transport: &dpop.Transport{Signer: signer, Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok.AccessToken, TokenType: tok.TokenType}), Base: d.trust.Transport}}
	cs, err := mcpserver.ConnectClient(ctx, hc, d.files)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "read_file", Arguments: map[string]any{"name": "readme.txt"}})
	if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != "hello from the files server" {
		t.Fatalf("read_file with DPoP: %v %v", res, err)
	}
	status, challenge := d.post(t, d.files, &oauth2.Token{AccessToken: tok.AccessToken}, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if status != http.StatusUnauthorized || !strings.Contains(challenge, "invalid_token") {
		t.Fatalf("the DPoP-bound token as Bearer: %d %q", status, challenge)
	}
	// The same key file again: the same key.
	out, _, err = run(t, env, append(base, "--dpop-key", keyFile, "--json")...)
	if err != nil || !strings.Contains(out, `"token_type": "DPoP"`) {
		t.Fatalf("second token: %v %s", err, out)
	}
	// A key only in memory is for --exec, whose child gets its file.
	_, _, err = run(t, env, base...)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != exitConfig || !strings.Contains(err.Error(), "--dpop without --dpop-key") {
		t.Fatalf("--dpop alone: %v", err)
	}
	if _, _, err := run(t, env, append(base, "--", "sh", "-c", `grep -q "PRIVATE KEY" "$MCPSTS_DPOP_KEY_FILE"`)...); err != nil {
		t.Fatalf("--exec with an in-memory key: %v", err)
	}
}

// TestMCPServerWithOAuth4WebAPIDPoP: a DPoP client written by others
// (oauth4webapi, npm) gets a DPoP-bound token from mcpsts, answering the
// broker's use_dpop_nonce challenge, and reads a file from the example
// server with it. .ci/run installs the package (npm ci); without it the
// test is skipped locally and fails in CI.
func TestMCPServerWithOAuth4WebAPIDPoP(t *testing.T) {
	node, dir := nodeClient(t, "oauth4webapi/package.json")
	d := startMCPDeployment(t)
	stdout, stderr := d.runNode(t, node, dir, "dpop-client.mjs")
	var out struct {
		TokenType    string `json:"token_type"`
		JKT          string `json:"jkt"`
		NonceRetries int    `json:"nonce_retries"`
		ReadFile     string `json:"read_file"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("%q: %v (stderr %s)", stdout, err, stderr)
	}
	if !strings.EqualFold(out.TokenType, "DPoP") || len(out.JKT) != 43 || out.NonceRetries != 1 || out.ReadFile != "hello from the files server" {
		t.Fatalf("oauth4webapi saw %+v", out)
	}
}
