package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/issuer"
)

// TestMetadataAdvertisesOnlyImplemented fetches both discovery documents
// from a running server: they agree, name the issuer exactly, hold nothing
// but what is implemented, and every URL they advertise answers.
func TestMetadataAdvertisesOnlyImplemented(t *testing.T) {
	s := startServe(t, devEnv, "--dev", "--data", filepath.Join(t.TempDir(), "d"), "--listen", "127.0.0.1:0")
	c := clientTrusting(t, s.caPath)
	_, oauth := get(t, c, s.issuer+"/.well-known/oauth-authorization-server")
	resp, oidc := get(t, c, s.issuer+"/.well-known/openid-configuration")
	if oauth != oidc {
		t.Fatalf("RFC 8414 and OIDC documents differ:\n%s\n%s", oauth, oidc)
	}
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type = %q", resp.Header.Get("Content-Type"))
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(oauth), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["issuer"] != s.issuer {
		t.Fatalf("issuer %v, want exactly %s", doc["issuer"], s.issuer)
	}
	// Only what is implemented today; issues that add endpoints add here.
	implemented := map[string]bool{"issuer": true, "jwks_uri": true, "token_endpoint": true,
		"grant_types_supported": true, "token_endpoint_auth_methods_supported": true,
		"token_endpoint_auth_signing_alg_values_supported": true, "tls_client_certificate_bound_access_tokens": true,
		"authorization_endpoint": true, "response_types_supported": true,
		// serve --dev has the browser flows, with its development login.
		"code_challenge_methods_supported": true, "scopes_supported": true,
		"authorization_response_iss_parameter_supported": true, "client_id_metadata_document_supported": true,
		"dpop_signing_alg_values_supported": true, "introspection_endpoint": true, "revocation_endpoint": true,
		"introspection_endpoint_auth_methods_supported": true, "revocation_endpoint_auth_methods_supported": true,
		"identity_chaining_requested_token_types_supported": true}
	for k, v := range doc {
		if !implemented[k] {
			t.Errorf("metadata advertises %q = %v, which is not implemented", k, v)
		}
	}
	if r, _ := get(t, c, doc["jwks_uri"].(string)); r.StatusCode != 200 {
		t.Errorf("jwks_uri answers %d", r.StatusCode)
	}
	resp, err := c.PostForm(doc["token_endpoint"].(string), url.Values{"grant_type": {"password"}})
	if err != nil {
		t.Fatal(err)
	}
	var tokenErr map[string]string
	json.NewDecoder(resp.Body).Decode(&tokenErr)
	resp.Body.Close()
	if resp.StatusCode != 400 || tokenErr["error"] != "unsupported_grant_type" {
		t.Errorf("token_endpoint answers %d %v", resp.StatusCode, tokenErr)
	}
	// The authorization endpoint serves the code flow with PKCE S256 and
	// never redirects to a redirect URI no client registered: an error page.
	for k, want := range map[string]string{"response_types_supported": "[code]", "code_challenge_methods_supported": "[S256]",
		"scopes_supported": "[files:read files:write offline_access]", "authorization_response_iss_parameter_supported": "true",
		"grant_types_supported": "[urn:ietf:params:oauth:grant-type:token-exchange urn:ietf:params:oauth:grant-type:jwt-bearer client_credentials authorization_code refresh_token]"} {
		if got := fmt.Sprint(doc[k]); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	if doc["registration_endpoint"] != nil {
		t.Error("dynamic client registration is advertised; it is off by default")
	}
	noRedirect := *c
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err = noRedirect.Get(doc["authorization_endpoint"].(string) + "?response_type=code&client_id=agent&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&state=abc")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("Location") != "" || !strings.Contains(string(page), "not known to this server") {
		t.Errorf("authorization_endpoint answers %d, Location %q:\n%s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	resp, body := get(t, c, "https://"+s.addr+"/readyz")
	if resp.StatusCode != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("/readyz = %d %s", resp.StatusCode, body)
	}
}

func TestKeysCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d")
	s := startServe(t, devEnv, "--dev", "--data", data, "--listen", "127.0.0.1:0")
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`(?m)^(\S{43})\s+ES256\s+local\s+(\w+)\s`)

	out, _, err := run(t, devEnv, "keys", "list", "--data", data)
	if m := row.FindAllStringSubmatch(out, -1); err != nil || len(m) != 1 || m[0][2] != "active" {
		t.Fatalf("keys list = %q, %v; want one active key", out, err)
	}
	out, _, err = run(t, devEnv, "keys", "rotate", "--data", data)
	added := regexp.MustCompile(`^added key (\S{43}): published now, signs from \S+Z\n$`).FindStringSubmatch(out)
	if err != nil || added == nil {
		t.Fatalf("keys rotate = %q, %v", out, err)
	}
	out, _, _ = run(t, devEnv, "keys", "rotate", "--data", data)
	if out != "key "+added[1]+" is already pending; no new key made\n" {
		t.Fatalf("second rotate = %q", out)
	}
	// Both are in the audit log, naming the operating-system user.
	audit, _ := os.ReadFile(filepath.Join(data, "audit.log"))
	if ls := strings.Split(strings.TrimSpace(string(audit)), "\n"); len(ls) != 2 || !strings.Contains(ls[0], `"event":"keys.rotate"`) ||
		!strings.Contains(ls[0], `"keys.added":"`+added[1]+`"`) || !strings.Contains(ls[0], `"admin.principal":"cli:`) {
		t.Fatalf("audit log after rotations:\n%s", audit)
	}
	out, _, _ = run(t, devEnv, "keys", "list", "--data", data)
	m := row.FindAllStringSubmatch(out, -1)
	if len(m) != 2 || m[0][2] != "active" || m[1][1] != added[1] || m[1][2] != "pending" {
		t.Fatalf("keys list after rotate = %q", out)
	}

	// The pending key is published at once by a server started afterwards.
	s2 := startServe(t, devEnv, "--dev", "--data", data, "--listen", "127.0.0.1:0")
	if kids := jwksKids(t, clientTrusting(t, s2.caPath), s2.issuer); len(kids) != 2 {
		t.Fatalf("JWKS after rotate = %v, want the active and the pending key", kids)
	}

	_, _, err = run(t, devEnv, "keys", "list", "--data", filepath.Join(t.TempDir(), "none"))
	if err == nil || !strings.Contains(err.Error(), "does not exist: start mcpsts serve --dev first") {
		t.Fatalf("keys list on a missing data dir: %v", err)
	}
}

// TestWrongKEKStopsStartup: signing keys sealed under one key-encryption key
// do not load under another, and start-up says so.
func TestWrongKEKStopsStartup(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d")
	s := startServe(t, devEnv, "--dev", "--data", data, "--listen", "127.0.0.1:0")
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	other, _ := issuer.GenerateKEK()
	if err := os.WriteFile(filepath.Join(data, "kek"), other, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := newRootCommand(devEnv)
	root.SetArgs([]string{"serve", "--dev", "--data", data, "--listen", "127.0.0.1:0"})
	var out syncBuffer
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.ExecuteContext(ctx)
	if err == nil || !strings.Contains(err.Error(), "cannot decrypt the private key: wrong key-encryption key or tampered data") {
		t.Fatalf("serve with another KEK = %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "mcpsts.db")); err != nil {
		t.Fatal("a failed start removed an existing data directory's database")
	}
}

// TestMetadataForEnterpriseClients: a broker without the browser flows and
// without a provider that accepts ID-JAGs still serves the ID-JAG grant
// (its own ID-JAGs), so its metadata has what the MCP Go SDK's enterprise
// handler checks of every authorization server before any flow.
func TestMetadataForEnterpriseClients(t *testing.T) {
	broker, ca := serveBroker(t, "id: x\nmatch: {provider: ci, subject: x}\ngrant: {client_id: x, audiences: [\"https://files.example.com/mcp\"]}\n", "")
	_, raw := get(t, clientTrusting(t, ca), broker+"/.well-known/oauth-authorization-server")
	var doc map[string]any
	json.Unmarshal([]byte(raw), &doc)
	if fmt.Sprint(doc["code_challenge_methods_supported"]) != "[S256]" || fmt.Sprint(doc["identity_chaining_requested_token_types_supported"]) != "[urn:ietf:params:oauth:token-type:id-jag]" {
		t.Fatalf("metadata: %s", raw)
	}
}
