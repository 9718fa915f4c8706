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
	"github.com/mcpsts/mcpsts/internal/mdblocks"
	"github.com/mcpsts/mcpsts/resource"
)

// TestGoSDKEnterpriseHandler: the MCP Go SDK's enterprise-managed
// authorization handler (extauth.EnterpriseHandler, SEP-990, unmodified)
// connects to the example files server, lists its tools and calls one, in
// the two set-ups of docs/enterprise.md, each configured with that page's
// blocks exactly as written (but for the hosts, which are loopback ones
// here, and the test IdP's CA): (a) the corporate IdP issues the ID-JAG and
// mcpsts is the MCP authorization server; (b) mcpsts is the hub: it issues
// the ID-JAG (from the corporate ID token) and redeems it, its provider not
// marked id_jag (issue 32: the SDK then found no
// code_challenge_methods_supported). The access token names the user, the
// client and the one server; the audit lines name the target.
func TestGoSDKEnterpriseHandler(t *testing.T) {
	blocks, err := mdblocks.Read(filepath.Join("..", "..", "docs", "enterprise.md"))
	if err != nil {
		t.Fatal(err)
	}
	yamls := mdblocks.Of(blocks, "yaml")
	if len(yamls) != 3 {
		t.Fatalf("docs/enterprise.md has %d YAML blocks, want 3 (the provider and the map of the first set-up, the hub's)", len(yamls))
	}
	hub := strings.SplitN(yamls[2].Text, "---\n", 2)
	if len(hub) != 2 {
		t.Fatalf("%s: want the hub's provider, ---, and its map", yamls[2])
	}
	for _, tc := range []struct {
		name, providers, maps string
		hosts                 map[string]string // the page's hosts: "corp", "broker" or "files"
		client                string
		grants                []string
		idpIsBroker           bool
	}{
		{name: "the corporate IdP issues the ID-JAG", providers: yamls[0].Text, maps: yamls[1].Text,
			hosts: map[string]string{"https://acme.okta.com": "corp", "https://files.example.com/mcp": "files"}, client: "desktop",
			grants: []string{"urn:ietf:params:oauth:grant-type:jwt-bearer"}},
		{name: "mcpsts issues and redeems the ID-JAG", providers: hub[0], maps: hub[1],
			hosts:  map[string]string{"https://login.corp.example": "corp", "https://sts.example.com": "broker", "https://files.example.com/mcp": "files"},
			client: "desktop-assistant", grants: []string{"urn:ietf:params:oauth:grant-type:jwt-bearer", "urn:ietf:params:oauth:grant-type:token-exchange"},
			idpIsBroker: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enterpriseAsDocumented(t, tc.providers, tc.maps, tc.hosts, tc.client, tc.grants, tc.idpIsBroker)
		})
	}
}

func enterpriseAsDocumented(t *testing.T, providers, maps string, hosts map[string]string, client string, grants []string, idpIsBroker bool) {
	corp := federationtest.NewIssuer(t)
	corp.EnableLogin(federationtest.Login{ClientID: client, ClientSecret: "desktop-secret"})
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
	local := map[string]string{"corp": corp.URL, "broker": broker, "files": files}
	for host, role := range hosts {
		if !strings.Contains(providers+maps, host) {
			t.Fatalf("docs/enterprise.md no longer names %s", host)
		}
		providers, maps = strings.ReplaceAll(providers, host, local[role]), strings.ReplaceAll(maps, host, local[role])
	}
	// The one addition: the test IdP's CA, after the issuer's discovery
	// (in the block's own style: a flow mapping or one key a line).
	caFile, sep := write("corp.pem", corp.CAPEM()), "\n    "
	if strings.Contains(providers, "{") {
		sep = ", "
	}
	withCA := strings.Replace(providers, "discovery: true", "discovery: true"+sep+"ca_file: "+caFile, 1)
	os.Mkdir(filepath.Join(dir, "maps"), 0o700)
	write("maps/people.yaml", []byte(maps))
	auditFile := filepath.Join(dir, "audit.log")
	cfg, err := config.Load(write("mcpsts.yaml", []byte(fmt.Sprintf(`issuer: %s
listen: %s
data_dir: %s
tls: {cert_file: %s, key_file: %s}
trust_maps: {paths: [%s]}
audit: {file: %s}
keys: {kek_file: %s}
`, broker, ln.Addr(), filepath.Join(dir, "data"), filepath.Join(dir, "pki", "server.pem"), filepath.Join(dir, "pki", "server-key.pem"),
		filepath.Join(dir, "maps"), auditFile, write("kek", []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n")))+withCA)), func(string) string { return "" }, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), cfg, Options{Listener: ln, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	// The desktop client, registered as a public client (/admin/v1/clients).
	doc, _ := json.Marshal(map[string]any{"client_id": client, "name": "Desktop Assistant", "grant_types": grants})
	if _, err := s.st.Clients().PutRecord(context.Background(), client, doc, 0); err != nil {
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

	// The person, in engineering (the maps' condition), signed in at the
	// corporate IdP for this client.
	idToken := func(context.Context) (*oauth2.Token, error) {
		n := time.Now().Unix()
		id := corp.Sign(map[string]any{"iss": corp.URL, "sub": "alice", "aud": client, "iat": n, "exp": n + 300, "groups": []string{"engineering"}}, nil)
		return (&oauth2.Token{AccessToken: "opaque", TokenType: "Bearer"}).WithExtra(map[string]any{"id_token": id}), nil
	}
	idp, cred := corp.URL, &oauthex.ClientCredentials{ClientID: client, ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: "desktop-secret"}}
	if idpIsBroker {
		idp, cred = broker, &oauthex.ClientCredentials{ClientID: client}
	}
	h, err := extauth.NewEnterpriseHandler(&extauth.EnterpriseHandlerConfig{
		IdPIssuerURL: idp, IdPCredentials: cred,
		MCPAuthServerURL: broker, MCPResourceURI: files, MCPCredentials: &oauthex.ClientCredentials{ClientID: client},
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
		data, _ := os.ReadFile(auditFile)
		t.Fatalf("connect: %v\naudit log:\n%s", err, data)
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
	if claims["sub"] != "user:corp/alice" || claims["client_id"] != client || claims["aud"] != files || claims["scope"] != "files:read" || claims["iss"] != broker {
		t.Fatalf("the access token's claims: %v", claims)
	}
	want := []string{`"subject.kind":"id-jag"`, `"subject.id":"alice"`, `"client_id":"` + client + `"`}
	if idpIsBroker {
		want = append(want, `"token.issued_type":"id-jag"`, `"id_jag.authorization_server":"`+broker+`"`)
	}
	var data []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if data, _ = os.ReadFile(auditFile); strings.Count(string(data), `"event":"token.allow"`) >= len(want)-2 {
			break
		}
	}
	// Each decision names the user, the client, the target and the outcome.
	for _, w := range want {
		if !strings.Contains(string(data), w) {
			t.Errorf("the audit log has no %s:\n%s", w, data)
		}
	}
	if n := strings.Count(string(data), `"subject.kind":"id-jag"`); n != 1 {
		t.Errorf("%d ID-JAG redemptions in the audit log, want 1", n)
	}
}
