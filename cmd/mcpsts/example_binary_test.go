package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/federation/federationtest"
)

// TestExampleServerBinary (item 3 of the decision review): the shipped
// examples/mcp-server, built and run as a user runs it, with
// --introspection-identity refuses a token revoked at the broker and takes
// a single-use token once, and with its default --dpop accept takes a
// DPoP-bound token with its proof and refuses it as a bearer token.
func TestExampleServerBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example server")
	}
	bin := filepath.Join(t.TempDir(), "mcp-server")
	if out, err := exec.Command("go", "build", "-o", bin, "../../examples/mcp-server").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// The server's address must be in its resource URI, which the broker's
	// maps name before it starts: a port taken and released (a process of
	// its own cannot be handed a listener).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	resource := "https://" + addr + "/mcp"
	idp := federationtest.NewIssuer(t)
	idpCA := filepath.Join(t.TempDir(), "idp.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	maps := ""
	for _, m := range []struct{ sub, extra string }{{"agent", ""}, {"once", ", single_use: true"}, {"dpop-agent", ", require_binding: dpop"}, {"writer", ", default_scopes: [files:write]"}} {
		maps += fmt.Sprintf("---\nid: %s\nmatch: {provider: ci, subject: %s}\ngrant: {client_id: %s, audiences: [%q], scopes: [files:read, files:write]%s}\n", m.sub, m.sub, m.sub, resource, m.extra)
	}
	// Its tool policy (issue 33): writes only under reports/.
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(policy, []byte(`server: `+resource+`
tools_without_rules: allow
rules:
  - {id: reports, tools: [write_file], when: ['args.name.startsWith("reports/")'], effect: allow}
  - {id: elsewhere, tools: [write_file], effect: deny, reason: files are written under reports/ only}
`), 0o600)
	broker, brokerCA := serveBroker(t, maps, fmt.Sprintf(`providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}
introspection:
  callers: [{provider: ci, subject: files-server, audiences: [%q]}]`, idp.URL, idpCA, resource))
	jwt := func(sub string) string {
		n := time.Now().Unix()
		return idp.Sign(map[string]any{"iss": idp.URL, "sub": sub, "aud": broker, "iat": n, "exp": n + 600}, nil)
	}
	identity := filepath.Join(t.TempDir(), "files-server.jwt")
	os.WriteFile(identity, []byte(jwt("files-server")), 0o600)
	cert, key, ca := productionFiles(t)
	cmd := exec.Command(bin, "--role", "files", "--listen", addr, "--resource", resource, "--broker", broker, "--ca", brokerCA,
		"--cert", cert, "--key", key, "--introspection-identity", identity, "--tool-policy", policy)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	server := clientTrusting(t, ca)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := server.Get("https://" + addr + "/.well-known/oauth-protected-resource/mcp"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the example server did not start:\n%s", stderr.String())
		}
	}
	bc := clientTrusting(t, brokerCA)
	token := func(sub string, mut func(*http.Request)) string {
		t.Helper()
		form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "resource": {resource},
			"subject_token": {jwt(sub)}, "subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}}
		req, _ := http.NewRequest(http.MethodPost, broker+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if mut != nil {
			mut(req)
		}
		body := doJSON(t, bc, req)
		tok, _ := body["access_token"].(string)
		if tok == "" {
			t.Fatalf("no token for %s: %v", sub, body)
		}
		return tok
	}
	call := func(scheme, tok, proof string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, resource, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", scheme+" "+tok)
		if proof != "" {
			req.Header.Set("DPoP", proof)
		}
		resp, err := server.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := call("Bearer", token("agent", nil), ""); got != 200 {
		t.Fatalf("a valid token: %d\n%s", got, stderr.String())
	}
	t.Run("tool policy", func(t *testing.T) {
		writer := token("writer", nil)
		for _, tc := range []struct {
			args, says string
			status     int
		}{
			{`{"name":"notes.txt","content":"x"}`, "files are written under reports/ only", 200},
			{`{"name":"reports/x","Name":"notes.txt"}`, "", 400},
		} {
			req, _ := http.NewRequest(http.MethodPost, resource, strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"write_file","arguments":`+tc.args+`}}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Authorization", "Bearer "+writer)
			resp, err := server.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Result struct {
					IsError bool `json:"isError"`
					Content []struct{ Text string }
				}
			}
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || tc.says != "" && (!body.Result.IsError || len(body.Result.Content) == 0 || !strings.Contains(body.Result.Content[0].Text, tc.says)) {
				t.Fatalf("%s: %d %+v, want %d saying %q", tc.args, resp.StatusCode, body, tc.status, tc.says)
			}
		}
	})
	edgeAcceptance(t, edgeUnderTest{
		call: call, broker: broker, resource: resource, token: token,
		revoke: func(tok, owner string) { revokeAt(t, bc, broker, tok, jwt(owner)) },
	})
}

// edgeUnderTest is a shipped edge (mcpsts gateway, examples/mcp-server)
// in front of a real broker whose maps give "agent" a plain token, "once"
// a single-use one and "dpop-agent" a DPoP-bound one for the edge.
type edgeUnderTest struct {
	call             func(scheme, tok, proof string) int // one request at the edge: its status
	token            func(sub string, mut func(*http.Request)) string
	revoke           func(tok, owner string) // at the broker, by the token's own workload
	broker, resource string
}

// edgeAcceptance: the edge refuses a token revoked at the broker, takes a
// single-use token once, takes a DPoP-bound token with its proof and
// refuses it as a bearer token.
func edgeAcceptance(t *testing.T, e edgeUnderTest) {
	t.Run("revoked at the broker", func(t *testing.T) {
		tok := e.token("agent", nil)
		e.revoke(tok, "agent")
		if got := e.call("Bearer", tok, ""); got != 401 {
			t.Fatalf("a revoked token: %d, want 401", got)
		}
	})
	t.Run("single use", func(t *testing.T) {
		tok := e.token("once", nil)
		for i, want := range []int{200, 401} {
			if got := e.call("Bearer", tok, ""); got != want {
				t.Fatalf("use %d: %d, want %d", i+1, got, want)
			}
		}
	})
	t.Run("DPoP-bound", func(t *testing.T) {
		k, _ := dpop.GenerateKey()
		s, _ := dpop.NewSigner(k, time.Now)
		tok := e.token("dpop-agent", func(r *http.Request) {
			p, _ := s.Proof(http.MethodPost, e.broker+"/token", "", "")
			r.Header.Set("DPoP", p)
		})
		if got := e.call("Bearer", tok, ""); got != 401 {
			t.Fatalf("as a bearer token: %d, want 401", got)
		}
		p, _ := s.Proof(http.MethodPost, e.resource, tok, "")
		if got := e.call("DPoP", tok, p); got != 200 {
			t.Fatalf("with its proof: %d, want 200", got)
		}
	})
}

// revokeAt revokes tok at the broker's revocation endpoint, authenticated
// with assertion (the token's own workload).
func revokeAt(t *testing.T, c *http.Client, broker, tok, assertion string) {
	t.Helper()
	resp, err := c.PostForm(broker+"/revoke", url.Values{"token": {tok}, "client_assertion": {assertion},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", resp, err)
	}
	resp.Body.Close()
}

// doJSON sends req with c and decodes the JSON answer.
func doJSON(t *testing.T, c *http.Client, req *http.Request) map[string]any {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return body
}
