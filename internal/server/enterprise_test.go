package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth/extauth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"

	"github.com/mcpsts/mcpsts/examples/mcp-server/mcpserver"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/devpki"
	"github.com/mcpsts/mcpsts/resource"
)

// TestGoSDKEnterpriseHandler: the MCP Go SDK's enterprise-managed
// authorization handler (extauth.EnterpriseHandler, SEP-990, unmodified)
// connects to the example files server, lists its tools and calls one, in
// two set-ups: (a) the corporate IdP issues the ID-JAG and mcpsts is the MCP
// authorization server; (b) mcpsts issues the ID-JAG (from the corporate
// ID token) and redeems it. The access token names the user, the client and
// the one server.
func TestGoSDKEnterpriseHandler(t *testing.T) {
	corp := federationtest.NewIssuer(t)
	corp.EnableLogin(federationtest.Login{ClientID: "desktop", ClientSecret: "desktop-secret"})
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	os.Mkdir(filepath.Join(dir, "pki"), 0o700)
	pki, err := devpki.Ensure(filepath.Join(dir, "pki"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	lnFiles, _ := net.Listen("tcp", "127.0.0.1:0")
	broker, files := "https://"+ln.Addr().String(), "https://"+lnFiles.Addr().String()+"/mcp"
	os.Mkdir(filepath.Join(dir, "maps"), 0o700)
	write("maps/people.yaml", []byte(`id: people
match: {provider: corp, subject_pattern: ".+"}
grant:
  client_id_expr: request.client_id
  audiences: ["`+files+`"]
  scopes: [files:read, files:write]
  default_scopes: [files:read]
  authorization_servers: ["`+broker+`"]
`))
	auditFile := filepath.Join(dir, "audit.log")
	cfg, err := config.Load(write("mcpsts.yaml", []byte(fmt.Sprintf(`issuer: %s
listen: %s
data_dir: %s
tls: {cert_file: %s, key_file: %s}
trust_maps: {paths: [%s]}
audit: {file: %s}
keys: {kek_file: %s}
providers:
  - {name: corp, kind: user, issuer: %s, discovery: true, ca_file: %s, id_jag: true, audiences: [%s, desktop]}
`, broker, ln.Addr(), filepath.Join(dir, "data"), filepath.Join(dir, "pki", "server.pem"), filepath.Join(dir, "pki", "server-key.pem"),
		filepath.Join(dir, "maps"), auditFile, write("kek", []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n")),
		corp.URL, write("corp.pem", corp.CAPEM()), broker))), func(string) string { return "" }, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), cfg, Options{Listener: ln, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	// The desktop client, registered as a public client of both roles.
	doc, _ := json.Marshal(map[string]any{"client_id": "desktop", "name": "Desktop Assistant",
		"grant_types": []string{"urn:ietf:params:oauth:grant-type:jwt-bearer", "urn:ietf:params:oauth:grant-type:token-exchange"}})
	if _, err := s.st.Clients().PutRecord(context.Background(), "desktop", doc, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.clients.reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	roots := x509.NewCertPool()
	caPEM, _ := os.ReadFile(pki.CAPath)
	roots.AppendCertsFromPEM(caPEM)
	roots.AppendCertsFromPEM(corp.CAPEM())
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	rs, err := resource.New(resource.Config{Resource: files, Issuer: broker, Transport: tr, ToolScopes: mcpserver.FilesToolScopes, Implies: mcpserver.FilesImplies})
	if err != nil {
		t.Fatal(err)
	}
	go rs.Run(ctx)
	var mu sync.Mutex
	var lastToken string
	filesServer := mcpserver.Files(rs, "", &http.Client{Transport: tr})
	protected := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastToken = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		mu.Unlock()
		filesServer.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: protected, TLSConfig: &tls.Config{Certificates: []tls.Certificate{pki.Certificate}}}
	go srv.ServeTLS(lnFiles, "", "")
	defer srv.Close()

	idToken := func(context.Context) (*oauth2.Token, error) {
		n := time.Now().Unix()
		id := corp.Sign(map[string]any{"iss": corp.URL, "sub": "alice", "aud": "desktop", "iat": n, "exp": n + 300}, nil)
		return (&oauth2.Token{AccessToken: "opaque", TokenType: "Bearer"}).WithExtra(map[string]any{"id_token": id}), nil
	}
	for _, tc := range []struct {
		name string
		idp  string
		cred *oauthex.ClientCredentials
	}{
		{"the corporate IdP issues the ID-JAG", corp.URL, &oauthex.ClientCredentials{ClientID: "desktop", ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: "desktop-secret"}}},
		{"mcpsts issues and redeems the ID-JAG", broker, &oauthex.ClientCredentials{ClientID: "desktop"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := extauth.NewEnterpriseHandler(&extauth.EnterpriseHandlerConfig{
				IdPIssuerURL: tc.idp, IdPCredentials: tc.cred,
				MCPAuthServerURL: broker, MCPResourceURI: files, MCPCredentials: &oauthex.ClientCredentials{ClientID: "desktop"},
				MCPScopes: []string{"files:read"}, IDTokenFetcher: idToken, HTTPClient: &http.Client{Transport: tr, Timeout: 20 * time.Second},
			})
			if err != nil {
				t.Fatal(err)
			}
			rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
			defer rcancel()
			c := mcp.NewClient(&mcp.Implementation{Name: "sdk-enterprise-test", Version: "1.0.0"}, nil)
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
			mu.Lock()
			part := strings.Split(lastToken, ".")
			mu.Unlock()
			if len(part) != 3 {
				t.Fatalf("the server saw no JWT")
			}
			payload, _ := base64.RawURLEncoding.DecodeString(part[1])
			var claims map[string]any
			json.Unmarshal(payload, &claims)
			if claims["sub"] != "user:corp/alice" || claims["client_id"] != "desktop" || claims["aud"] != files || claims["scope"] != "files:read" || claims["iss"] != broker {
				t.Fatalf("the access token's claims: %v", claims)
			}
		})
	}
	var data []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if data, _ = os.ReadFile(auditFile); strings.Count(string(data), `"event":"token.allow"`) >= 3 {
			break
		}
	}
	// Each decision names the user, the client, the target and the outcome.
	for _, want := range []string{`"subject.kind":"id-jag"`, `"token.issued_type":"id-jag"`,
		`"id_jag.authorization_server":"` + broker + `"`, `"subject.id":"alice"`, `"client_id":"desktop"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the audit log has no %s:\n%s", want, data)
		}
	}
	if n := strings.Count(string(data), `"subject.kind":"id-jag"`); n != 2 {
		t.Errorf("%d ID-JAG redemptions in the audit log, want 2", n)
	}
}
