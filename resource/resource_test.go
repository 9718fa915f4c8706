package resource_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/mcpsts/mcpsts/exchange/client"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/resource"
)

const (
	mcpURL  = "https://mcp.example.com/mcp"
	metaURL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
)

// *client.Client is the Delegator MCP servers embed.
var _ resource.Delegator = (*client.Client)(nil)

type fixture struct {
	broker  *federationtest.Issuer
	rs      *resource.Server
	srv     *httptest.Server
	reached atomic.Int64 // requests the protected handler saw
	last    atomic.Pointer[http.Request]
}

func testConfig(broker *federationtest.Issuer) resource.Config {
	return resource.Config{
		Resource:   mcpURL,
		Issuer:     broker.URL,
		Transport:  broker.Transport(),
		ToolScopes: map[string][]string{"read_file": {"files:read"}, "write_file": {"files:write"}},
		Implies:    map[string][]string{"files:admin": {"files:write"}, "files:write": {"files:read"}},
	}
}

// newFixture serves a handler protected by the middleware (route scope
// mcp:connect) on a TLS server that asks for, but does not require, a
// client certificate.
func newFixture(t testing.TB, mutate func(*resource.Config)) *fixture {
	t.Helper()
	f := &fixture{broker: federationtest.NewIssuer(t)}
	f.broker.AddKey("ES256")
	cfg := testConfig(f.broker)
	if mutate != nil {
		mutate(&cfg)
	}
	var err error
	if f.rs, err = resource.New(cfg); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	f.rs.Mount(mux, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.reached.Add(1)
		f.last.Store(r)
		c, ok := resource.CallerFromContext(r.Context())
		if !ok {
			t.Error("no caller in the handler's context")
		}
		io.Copy(io.Discard, r.Body)
		json.NewEncoder(w).Encode(c.Claims)
	}), "mcp:connect")
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

// token signs an access token for the MCP server with claims changed by
// set (a nil value deletes a claim) and header members changed by hdr.
func (f *fixture) token(set map[string]any, hdr map[string]any) string {
	now := time.Now().Unix()
	c := map[string]any{
		"iss": f.broker.URL, "sub": "workload:k8s/system:serviceaccount:apps:agent", "aud": mcpURL,
		"client_id": "agent", "scope": "mcp:connect files:read", "iat": now, "nbf": now, "exp": now + 900, "jti": "j-1",
	}
	for k, v := range set {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	h := map[string]any{"typ": "at+jwt"}
	for k, v := range hdr {
		h[k] = v
	}
	return f.broker.Sign(c, h)
}

type call struct {
	method, path, auth, body, origin string
	header                           http.Header
	cert                             *tls.Certificate
}

type answer struct {
	status    int
	challenge string
	code      string
	desc      string
}

func (f *fixture) do(t *testing.T, c call) answer {
	t.Helper()
	if c.method == "" {
		c.method = http.MethodPost
	}
	if c.path == "" {
		c.path = "/mcp"
	}
	if c.method == http.MethodPost && c.body == "" && c.auth != "" {
		c.body = `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	}
	req, _ := http.NewRequest(c.method, f.srv.URL+c.path, strings.NewReader(c.body))
	req.Header.Set("Content-Type", "application/json")
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	if c.origin != "" {
		req.Header.Set("Origin", c.origin)
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	tr := f.srv.Client().Transport.(*http.Transport).Clone()
	if c.cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*c.cert}
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if resp.StatusCode != http.StatusOK {
		json.NewDecoder(resp.Body).Decode(&body)
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("error answer Cache-Control = %q", cc)
		}
	}
	return answer{resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body.Error, body.Description}
}

func toolCall(name string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + name + `","arguments":{}}}`
}

func invalid(desc string) answer {
	return answer{401, `Bearer error="invalid_token", error_description="` + desc + `", resource_metadata="` + metaURL + `"`, "invalid_token", desc}
}

func badRequest(desc string) answer { return answer{400, "", "invalid_request", desc} }

func clientCert(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agent"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestConformanceB holds the resource-server rules of CONFORMANCE.md
// section B, one row each, asserted exactly. No refused request reaches
// the handler.
func TestConformanceB(t *testing.T) {
	f := newFixture(t, nil)
	trap := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("a key URL from the token was fetched") }))
	defer trap.Close()
	certA, tpA := clientCert(t)
	certB, _ := clientCert(t)
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ok := f.token(nil, nil)
	now := time.Now().Unix()
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": f.broker.URL, "aud": mcpURL, "sub": "x", "client_id": "c", "jti": "j", "iat": now, "exp": now + 60}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	hsTok := func() string {
		tk := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": f.broker.URL, "aud": mcpURL, "sub": "x", "client_id": "c", "jti": "j", "iat": now, "exp": now + 60, "scope": "mcp:connect"})
		tk.Header["typ"] = "at+jwt"
		tk.Header["kid"] = f.broker.KeyID()
		pub, _ := json.Marshal(jose.JSONWebKey{Key: f.broker.PublicKey()})
		s, _ := tk.SignedString(pub)
		return s
	}()
	embedded := func() string {
		tk := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": f.broker.URL, "aud": mcpURL, "sub": "x", "client_id": "c", "jti": "j", "iat": now, "exp": now + 60, "scope": "mcp:connect"})
		tk.Header["typ"] = "at+jwt"
		tk.Header["jwk"] = jose.JSONWebKey{Key: attacker.Public()}
		tk.Header["jku"] = trap.URL + "/keys"
		tk.Header["kid"] = "attacker"
		s, _ := tk.SignedString(attacker)
		return s
	}()
	// smuggled is a token of the broker whose payload holds, after the
	// real claims, members that encoding/json reads as aud, scope and exp.
	smuggled := func(extra string) string {
		c, _ := json.Marshal(map[string]any{"iss": f.broker.URL, "sub": "workload:k8s/system:serviceaccount:apps:agent", "aud": "https://payments.example.com/mcp",
			"client_id": "agent", "scope": "payments:read", "iat": now, "nbf": now, "exp": now + 900, "jti": "j-2"})
		return f.broker.SignRaw([]byte(`{"alg":"ES256","typ":"at+jwt","kid":"`+f.broker.KeyID()+`"}`), append(c[:len(c)-1], ","+extra+"}"...))
	}
	parts := strings.Split(ok, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin"}`)) + "." + parts[2]

	tests := []struct {
		rule string
		call call
		want answer
	}{
		{"B1.2/B1.3/B3.1 no token: 401, resource_metadata and scope, no error", call{body: toolCall("read_file")},
			answer{401, `Bearer scope="mcp:connect", resource_metadata="` + metaURL + `"`, "", "this server needs an access token from " + f.broker.URL}},
		{"B3.1 another scheme counts as no token", call{auth: "Basic YTpi"},
			answer{401, `Bearer scope="mcp:connect", resource_metadata="` + metaURL + `"`, "", "this server needs an access token from " + f.broker.URL}},
		{"B1.4 aud of another server", call{auth: "Bearer " + f.token(map[string]any{"aud": "https://other.example.com/mcp"}, nil)},
			invalid("the token is not for this server (aud)")},
		{"B1.4 aud naming this server among others", call{auth: "Bearer " + f.token(map[string]any{"aud": []string{mcpURL, "https://other.example.com/mcp"}}, nil)},
			invalid("the token is not for this server (aud)")},
		{"B1.4 aud of the broker (a subject token, not an access token)", call{auth: "Bearer " + f.token(map[string]any{"aud": f.broker.URL}, nil)},
			invalid("the token is not for this server (aud)")},
		{"B1.4 no aud", call{auth: "Bearer " + f.token(map[string]any{"aud": nil}, nil)},
			invalid("the token is not for this server (aud)")},
		{"B1.5 expired beyond the leeway", call{auth: "Bearer " + f.token(map[string]any{"exp": now - 31, "iat": now - 600, "nbf": now - 600}, nil)},
			invalid("the token has expired")},
		{"B1.5 not yet valid", call{auth: "Bearer " + f.token(map[string]any{"nbf": now + 120}, nil)},
			invalid("the token is not valid yet")},
		{"B1.5 issued in the future", call{auth: "Bearer " + f.token(map[string]any{"iat": now + 120}, nil)},
			invalid("the token is not valid yet")},
		{"B1.6 missing tool scope: 403 with every scope the call needs", call{auth: "Bearer " + ok, body: toolCall("write_file")},
			answer{403, `Bearer error="insufficient_scope", error_description="the token lacks a scope this request needs", scope="mcp:connect files:write", resource_metadata="` + metaURL + `"`, "insufficient_scope", "the token lacks a scope this request needs"}},
		{"B1.6 missing route scope", call{auth: "Bearer " + f.token(map[string]any{"scope": "files:read"}, nil), body: toolCall("read_file")},
			answer{403, `Bearer error="insufficient_scope", error_description="the token lacks a scope this request needs", scope="mcp:connect files:read", resource_metadata="` + metaURL + `"`, "insufficient_scope", "the token lacks a scope this request needs"}},
		{"B1.6 a batch needs the scopes of every call in it", call{auth: "Bearer " + ok, body: "[" + toolCall("read_file") + "," + toolCall("write_file") + "]"},
			answer{403, `Bearer error="insufficient_scope", error_description="the token lacks a scope this request needs", scope="mcp:connect files:read files:write", resource_metadata="` + metaURL + `"`, "insufficient_scope", "the token lacks a scope this request needs"}},
		{"B1.10 token in the query string", call{path: "/mcp?access_token=" + ok, auth: "Bearer " + ok},
			badRequest("access tokens are accepted only in the Authorization header")},
		{"B1.12 foreign Origin", call{auth: "Bearer " + ok, origin: "https://evil.example"},
			answer{403, "", "", "the request's Origin is not allowed"}},
		{"B3.1 malformed Authorization", call{auth: "Bearer a b"}, badRequest("the Authorization header is not 'Bearer' and one token")},
		{"B3.1 two Authorization headers", call{header: http.Header{"Authorization": {"Bearer " + ok, "Bearer " + ok}}},
			badRequest("the request has more than one Authorization header")},
		{"B4.1 typ JWT", call{auth: "Bearer " + f.token(nil, map[string]any{"typ": "JWT"})}, invalid("the token is not an access token (typ must be at+jwt)")},
		{"B4.1 no typ", call{auth: "Bearer " + f.broker.Sign(map[string]any{"iss": f.broker.URL, "aud": mcpURL, "exp": now + 60}, map[string]any{"typ": nil})},
			invalid("the token is not an access token (typ must be at+jwt)")},
		{"B4.1 iss of another server", call{auth: "Bearer " + f.token(map[string]any{"iss": "https://evil.example"}, nil)},
			invalid("the token was issued by another authorization server")},
		{"B4.1 tampered payload", call{auth: "Bearer " + tampered}, invalid("the token's signature does not verify")},
		{"B4.1 alg none", call{auth: "Bearer " + noneTok}, invalid("the token's signature does not verify")},
		{"B4.1 HS256 keyed with the public key", call{auth: "Bearer " + hsTok}, invalid("the token's signature does not verify")},
		{"B4.1 no exp", call{auth: "Bearer " + f.token(map[string]any{"exp": nil}, nil)}, invalid("the token has no expiry")},
		{"B4.2 jwk/jku in the header are never used", call{auth: "Bearer " + embedded}, invalid("the token is not signed by a key of the authorization server")},
		{"B4.2 crit", call{auth: "Bearer " + f.token(nil, map[string]any{"crit": []string{"exp"}})},
			invalid("the token has critical header parameters this server does not understand")},
		{"B4.2 decisions use the top-level scope, not the actor's", call{auth: "Bearer " + f.token(map[string]any{"act": map[string]any{"sub": "svc", "scope": "files:write"}}, nil), body: toolCall("write_file")},
			answer{403, `Bearer error="insufficient_scope", error_description="the token lacks a scope this request needs", scope="mcp:connect files:write", resource_metadata="` + metaURL + `"`, "insufficient_scope", "the token lacks a scope this request needs"}},
		{"RFC 9068 §2.2 required claims", call{auth: "Bearer " + f.token(map[string]any{"client_id": nil, "jti": nil, "iat": nil}, nil)},
			invalid("the token lacks client_id, iat, jti")},
		{"B5.1 certificate-bound token without a certificate", call{auth: "Bearer " + f.token(map[string]any{"cnf": map[string]any{"x5t#S256": tpA}}, nil)},
			invalid("the token is bound to a client certificate the connection did not present")},
		{"B5.1 certificate-bound token over another certificate", call{auth: "Bearer " + f.token(map[string]any{"cnf": map[string]any{"x5t#S256": tpA}}, nil), cert: &certB},
			invalid("the token is bound to another client certificate")},
		{"B5.2 DPoP-bound token presented as Bearer", call{auth: "Bearer " + f.token(map[string]any{"cnf": map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}, nil)},
			invalid("the token is DPoP-bound; this server accepts bearer and certificate-bound tokens only")},
		{"B5.2 the DPoP scheme", call{auth: "DPoP " + ok}, badRequest("this server accepts Bearer tokens only, not DPoP")},
		{"a tool call read two ways", call{auth: "Bearer " + ok, body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","Name":"write_file"}}`},
			badRequest("the request body is not a JSON-RPC message or batch with unambiguous member names")},
		{"registered claims smuggled in another letter case", call{auth: "Bearer " + smuggled(`"Aud":"`+mcpURL+`","Scope":"mcp:connect files:read files:write","EXP":4102444800`), body: toolCall("write_file")},
			invalid("the token has member names that differ only in letter case")},
		{"a registered claim in another letter case alone", call{auth: "Bearer " + smuggled(`"\u017fcope":"files:write"`)},
			invalid("the token has member names that differ only in letter case")},
		{"an oversized token", call{auth: "Bearer " + strings.Repeat("a", 9000)}, invalid("the token is too large")},
	}
	for _, tc := range tests {
		t.Run(tc.rule, func(t *testing.T) {
			before := f.reached.Load()
			if got := f.do(t, tc.call); got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if f.reached.Load() != before {
				t.Error("B1.9: a refused request reached the handler")
			}
		})
	}

	allowed := []struct {
		name string
		call call
	}{
		{"a read with files:read", call{auth: "Bearer " + ok, body: toolCall("read_file")}},
		{"B1.7 files:admin implies files:write implies files:read", call{auth: "Bearer " + f.token(map[string]any{"scope": "mcp:connect files:admin"}, nil), body: "[" + toolCall("read_file") + "," + toolCall("write_file") + "]"}},
		{"application/at+jwt", call{auth: "Bearer " + f.token(nil, map[string]any{"typ": "application/at+jwt"})}},
		{"bearer in lower case", call{auth: "bearer " + ok, method: http.MethodGet}},
		{"expired within the leeway", call{auth: "Bearer " + f.token(map[string]any{"exp": now - 10, "iat": now - 600, "nbf": now - 600}, nil)}},
		{"B5.1 certificate-bound token over its certificate", call{auth: "Bearer " + f.token(map[string]any{"cnf": map[string]any{"x5t#S256": tpA}}, nil), cert: &certA}},
		{"the resource's own Origin", call{auth: "Bearer " + ok, origin: "https://mcp.example.com"}},
		{"not a tool call", call{auth: "Bearer " + ok, body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`}},
	}
	for _, tc := range allowed {
		t.Run(tc.name, func(t *testing.T) {
			before := f.reached.Load()
			if got := f.do(t, tc.call); got.status != 200 || f.reached.Load() != before+1 {
				t.Errorf("got %+v, handler reached %d times", got, f.reached.Load()-before)
			}
			if h := f.last.Load().Header.Get("Authorization"); h != "" {
				t.Error("B1.8: the handler can read the incoming token")
			}
		})
	}
}

func TestCallerClaims(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.token(map[string]any{"act": map[string]any{"sub": "workload:k8s/svc-b", "client_id": "svc-b", "act": map[string]any{"sub": "workload:k8s/svc-a"}}}, nil)
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c resource.Claims
	json.NewDecoder(resp.Body).Decode(&c)
	if c.Subject != "workload:k8s/system:serviceaccount:apps:agent" || c.ClientID != "agent" || strings.Join(c.Scopes, " ") != "mcp:connect files:read" ||
		c.ID != "j-1" || c.Actor == nil || c.Actor.Subject != "workload:k8s/svc-b" || c.Actor.ClientID != "svc-b" ||
		strings.Join(c.Chain(), ",") != "workload:k8s/svc-b,workload:k8s/svc-a" || time.Until(c.ExpiresAt) < 14*time.Minute {
		t.Fatalf("claims = %+v", c)
	}
}

func TestMetadata(t *testing.T) {
	f := newFixture(t, func(c *resource.Config) { c.ResourceName = "Files" })
	want := `{"resource":"https://mcp.example.com/mcp","authorization_servers":["` + f.broker.URL + `"],` +
		`"scopes_supported":["files:admin","files:read","files:write"],"bearer_methods_supported":["header"],` +
		`"resource_name":"Files","tls_client_certificate_bound_access_tokens":true}`
	for _, path := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"} {
		resp, err := f.srv.Client().Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || string(body) != want {
			t.Errorf("%s: %d %s %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	if f.rs.MetadataURL() != metaURL {
		t.Errorf("MetadataURL = %s", f.rs.MetadataURL())
	}
	resp, _ := f.srv.Client().Post(f.srv.URL+"/.well-known/oauth-protected-resource/mcp", "application/json", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST metadata = %d", resp.StatusCode)
	}
}

func TestConfigErrors(t *testing.T) {
	broker := federationtest.NewIssuer(t)
	tests := []struct {
		name   string
		mutate func(*resource.Config)
		want   string
	}{
		{"http resource", func(c *resource.Config) { c.Resource = "http://mcp.example.com/mcp" }, `Config.Resource: "http://mcp.example.com/mcp" is not an absolute https URL`},
		{"resource with a query", func(c *resource.Config) { c.Resource = mcpURL + "?a=b" }, "may not hold user information, a query or a fragment"},
		{"upper-case host", func(c *resource.Config) { c.Resource = "https://MCP.example.com/mcp" }, "is not canonical"},
		{"default port", func(c *resource.Config) { c.Resource = "https://mcp.example.com:443/mcp" }, "is not canonical"},
		{"http issuer", func(c *resource.Config) { c.Issuer = "http://broker" }, `Config.Issuer: "http://broker" is not an https URL`},
		{"HS256", func(c *resource.Config) { c.Algorithms = []string{"HS256"} }, `Config.Algorithms: "HS256" is not allowed`},
		{"leeway", func(c *resource.Config) { c.Leeway = time.Hour }, "Config.Leeway: 1h0m0s is outside [0, 5m0s]"},
		{"offline_access", func(c *resource.Config) { c.Scopes = []string{"offline_access"} }, "Config.Scopes: offline_access is not for MCP servers"},
		{"bad scope", func(c *resource.Config) { c.ToolScopes = map[string][]string{"t": {`a"b`}} }, `Config.Scopes: "a\"b" is not a scope token`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(broker)
			tc.mutate(&cfg)
			_, err := resource.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "resource: ") {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestKeysUnavailable: when the broker's keys cannot be had the fault is
// ours: 503, not invalid_token, and the handler is not reached.
func TestKeysUnavailable(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.token(nil, nil)
	f.broker.SetDown(true)
	if f.rs.Ready() == nil {
		t.Fatal("ready before any key was loaded")
	}
	if got := f.do(t, call{auth: "Bearer " + tok}); got != (answer{503, "", "temporarily_unavailable", "the authorization server's keys cannot be loaded now"}) {
		t.Fatalf("got %+v", got)
	}
	f.broker.SetDown(false)
	// The failed load is rate-limited like an unknown kid; a Server that
	// runs its key refresher recovers by itself.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.rs.Run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for f.do(t, call{auth: "Bearer " + tok}).status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("keys never loaded after the broker came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := f.rs.Ready(); err != nil {
		t.Fatal(err)
	}
}

// TestKeyRotation: a token signed by a key the server has not seen yet is
// verified after one refetch of the broker's keys (the server's key
// refresher loaded the first set).
func TestKeyRotation(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.rs.Run(ctx)
	for deadline := time.Now().Add(10 * time.Second); f.rs.Ready() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the broker's keys not loaded within 10s: %v", f.rs.Ready())
		}
	}
	if got := f.do(t, call{auth: "Bearer " + f.token(nil, nil)}); got.status != 200 {
		t.Fatal(got)
	}
	f.broker.AddKey("ES256")
	before := f.broker.Requests("jwks")
	if got := f.do(t, call{auth: "Bearer " + f.token(nil, nil)}); got.status != 200 {
		t.Fatal(got)
	}
	if n := f.broker.Requests("jwks") - before; n != 1 {
		t.Fatalf("%d JWKS fetches for a new kid, want 1", n)
	}
}

type recordingDelegator struct {
	subject, audience string
	scopes            []string
}

func (d *recordingDelegator) Delegate(_ context.Context, subject, audience string, scopes []string) (*oauth2.Token, error) {
	d.subject, d.audience, d.scopes = subject, audience, scopes
	return &oauth2.Token{AccessToken: "downstream", TokenType: "Bearer"}, nil
}

func TestDelegate(t *testing.T) {
	d := &recordingDelegator{}
	var got *oauth2.Token
	var errs []error
	f := newFixture(t, func(c *resource.Config) { c.Delegator = d })
	mux := http.NewServeMux()
	f.rs.Mount(mux, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var err error
		got, err = resource.Delegate(r.Context(), "https://downstream.example.com/mcp", "files:read")
		errs = append(errs, err)
		_, err = resource.Delegate(r.Context(), mcpURL)
		errs = append(errs, err)
	}))
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	tok := f.token(nil, nil)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got == nil || got.AccessToken != "downstream" || errs[0] != nil || d.subject != tok || d.audience != "https://downstream.example.com/mcp" || strings.Join(d.scopes, " ") != "files:read" {
		t.Fatalf("delegation: %+v %v %+v", got, errs, d)
	}
	if errs[1] == nil || errs[1].Error() != "resource: a server cannot delegate to itself" {
		t.Fatalf("self delegation: %v", errs[1])
	}
	if _, err := resource.Delegate(context.Background(), "https://downstream.example.com/mcp"); !errors.Is(err, resource.ErrNoCaller) {
		t.Fatalf("without a caller: %v", err)
	}

	// A server without a Delegator cannot delegate.
	g := newFixture(t, nil)
	mux = http.NewServeMux()
	g.rs.Mount(mux, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := resource.Delegate(r.Context(), "https://downstream.example.com/mcp")
		errs = append(errs, err)
	}))
	srv2 := httptest.NewTLSServer(mux)
	defer srv2.Close()
	req, _ = http.NewRequest(http.MethodGet, srv2.URL+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+g.token(nil, nil))
	resp, err = srv2.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !errors.Is(errs[2], resource.ErrNoDelegator) {
		t.Fatalf("no delegator: %v", errs[2])
	}
}

// TestBodyCap: a body over MaxBodyBytes is refused before any tool runs.
func TestBodyCap(t *testing.T) {
	f := newFixture(t, func(c *resource.Config) { c.MaxBodyBytes = 1024 })
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"pad":"` + strings.Repeat("x", 2000) + `"}}}`
	if got := f.do(t, call{auth: "Bearer " + f.token(nil, nil), body: body}); got != (answer{413, "", "invalid_request", "the request body is too large"}) {
		t.Fatalf("got %+v", got)
	}
}

// TestImports holds the architecture rule: of this module, resource (and
// its SDK bridge) import only federation, claimname, dpop (the proofs it
// shares with the token endpoint) and attest's replay-cache interface.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/mcpsts/mcpsts/resource/...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/mcpsts/mcpsts/") && !strings.HasPrefix(p, "github.com/mcpsts/mcpsts/resource") && !slices.Contains([]string{"github.com/mcpsts/mcpsts/federation", "github.com/mcpsts/mcpsts/internal/claimname",
			"github.com/mcpsts/mcpsts/dpop", "github.com/mcpsts/mcpsts/attest"}, p) {
			t.Errorf("resource depends on %s", p)
		}
	}
}

type clock struct{ now atomic.Int64 }

func (c *clock) Now() time.Time      { return time.Unix(0, c.now.Load()) }
func (c *clock) Add(d time.Duration) { c.now.Add(int64(d)) }
func newClock(t time.Time) *clock    { c := &clock{}; c.now.Store(t.UnixNano()); return c }

// TestVerifiedCache: a cached token is re-checked on every use: its
// expiry, its binding to the connection, and that its key is still
// published.
func TestVerifiedCache(t *testing.T) {
	clk := newClock(time.Now())
	f := newFixture(t, func(c *resource.Config) { c.Clock = clk.Now })
	cert, tp := clientCert(t)
	other, _ := clientCert(t)
	bound := f.token(map[string]any{"cnf": map[string]any{"x5t#S256": tp}}, nil)
	plain := f.token(nil, nil)
	for i := 0; i < 2; i++ { // the second round is served from the cache
		if got := f.do(t, call{auth: "Bearer " + bound, cert: &cert}); got.status != 200 {
			t.Fatalf("round %d: %+v", i, got)
		}
		if got := f.do(t, call{auth: "Bearer " + bound, cert: &other}); got != invalid("the token is bound to another client certificate") {
			t.Fatalf("round %d, other certificate: %+v", i, got)
		}
		if got := f.do(t, call{auth: "Bearer " + bound}); got != invalid("the token is bound to a client certificate the connection did not present") {
			t.Fatalf("round %d, no certificate: %+v", i, got)
		}
		if got := f.do(t, call{auth: "Bearer " + plain}); got.status != 200 {
			t.Fatalf("round %d: %+v", i, got)
		}
	}
	clk.Add(15*time.Minute + 31*time.Second)
	if got := f.do(t, call{auth: "Bearer " + plain}); got != invalid("the token has expired") {
		t.Fatalf("cached token past its expiry: %+v", got)
	}

	// A key that leaves the published set takes its cached tokens with it.
	keys := &switchKeys{}
	keys.published.Store(true)
	g := newFixture(t, func(c *resource.Config) { c.Keys = keys })
	keys.pub = g.broker.PublicKey()
	tok := g.token(nil, nil)
	if got := g.do(t, call{auth: "Bearer " + tok}); got.status != 200 {
		t.Fatal(got)
	}
	keys.published.Store(false)
	if got := g.do(t, call{auth: "Bearer " + tok}); got != invalid("the token is not signed by a key of the authorization server") {
		t.Fatalf("token of a removed key: %+v", got)
	}
}

type switchKeys struct {
	pub       crypto.PublicKey
	published atomic.Bool
}

func (k *switchKeys) Key(context.Context, string, string) (crypto.PublicKey, error) {
	if !k.published.Load() {
		return nil, errors.New("no such key")
	}
	return k.pub, nil
}

func (k *switchKeys) Has(string) bool { return k.published.Load() }

// TestPrincipal: a session is bound to subject, client and current actor
// each: changing any one gives another principal.
func TestPrincipal(t *testing.T) {
	base := resource.Claims{Subject: "user:corp/alice", ClientID: "desktop", Actor: &resource.Actor{Subject: "workload:ci/agent"}}
	for name, other := range map[string]resource.Claims{
		"another subject": {Subject: "user:corp/bob", ClientID: "desktop", Actor: &resource.Actor{Subject: "workload:ci/agent"}},
		"another client":  {Subject: "user:corp/alice", ClientID: "evil-app", Actor: &resource.Actor{Subject: "workload:ci/agent"}},
		"another actor":   {Subject: "user:corp/alice", ClientID: "desktop", Actor: &resource.Actor{Subject: "workload:ci/intruder"}},
		"no actor":        {Subject: "user:corp/alice", ClientID: "desktop"},
	} {
		if other.Principal() == base.Principal() {
			t.Errorf("%s: the same principal %q", name, base.Principal())
		}
	}
	same := base
	if same.Principal() != base.Principal() {
		t.Error("the same claims, another principal")
	}
}

// TestFirstScopes: a request without a token, on a route that needs no
// scope, is told to get the configured first scopes (what a first call
// needs), or every supported scope when none are configured.
func TestFirstScopes(t *testing.T) {
	broker := federationtest.NewIssuer(t)
	for _, tc := range []struct {
		name  string
		first []string
		want  string
	}{
		{"not configured: every supported scope", nil, `Bearer scope="files:admin files:read files:write", resource_metadata="` + metaURL + `"`},
		{"configured: those", []string{"files:read"}, `Bearer scope="files:read", resource_metadata="` + metaURL + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(broker)
			cfg.Scopes, cfg.FirstScopes = nil, tc.first
			rs, err := resource.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			mux := http.NewServeMux()
			rs.Mount(mux, http.NotFoundHandler())
			srv := httptest.NewTLSServer(mux)
			defer srv.Close()
			resp, err := srv.Client().Post(srv.URL+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || got != tc.want {
				t.Fatalf("%d %s, want 401 %s", resp.StatusCode, got, tc.want)
			}
		})
	}
	cfg := testConfig(broker)
	cfg.FirstScopes = []string{"files read"}
	if _, err := resource.New(cfg); err == nil || !strings.Contains(err.Error(), `"files read" is not a scope token`) {
		t.Fatalf("a first scope that is no scope token: %v", err)
	}
}
