package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/federation/federationtest"
)

// regressionCase is one hostile request and its exact answer.
type regressionCase struct {
	class, name string
	method      string
	path        string
	form        url.Values
	raw         string // a raw body instead of form
	header      map[string]string
	status      int
	code        string // the OAuth error ("" when none is checked)
}

// TestSecurityRegressions runs the project's negative cases of every class
// against one real `mcpsts serve` (a production configuration, a trusted
// workload issuer, a user provider, the browser flows on): each request
// gets exactly its status and error code. docs/SECURITY.md counts them.
func TestSecurityRegressions(t *testing.T) {
	idp := federationtest.NewIssuer(t)
	idp.AddKey("ES256")
	other := federationtest.NewIssuer(t) // trusted by nobody
	dir := t.TempDir()
	idpCA := filepath.Join(dir, "idp.pem")
	os.WriteFile(idpCA, idp.CAPEM(), 0o600)
	corp := federationtest.NewIssuer(t) // people sign in here: the browser flows are on
	corp.EnableLogin(federationtest.Login{ClientID: "mcpsts", ClientSecret: "s3cret"})
	corpCA, secret := filepath.Join(dir, "corp.pem"), filepath.Join(dir, "secret")
	os.WriteFile(corpCA, corp.CAPEM(), 0o600)
	os.WriteFile(secret, []byte("s3cret"), 0o600)
	const files = "https://files.example.com/mcp"
	broker, ca := serveBroker(t, `id: agent
match: {provider: ci, subject: agent}
grant: {client_id: agent, audiences: ["`+files+`"], scopes: [files:read]}
---
id: bound
match: {provider: ci, subject: bound}
grant: {client_id: bound, audiences: ["`+files+`"], require_binding: dpop}
`, fmt.Sprintf(`providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}
  - {name: corp, kind: user, issuer: %s, discovery: true, ca_file: %s, login: {client_id: mcpsts, client_secret_file: %s}}`,
		idp.URL, idpCA, corp.URL, corpCA, secret))
	c := clientTrusting(t, ca)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	now := time.Now().Unix()
	claims := func(mut map[string]any) map[string]any {
		m := map[string]any{"iss": idp.URL, "sub": "agent", "aud": broker, "iat": now, "exp": now + 300}
		for k, v := range mut {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	good := idp.Sign(claims(nil), nil)
	b64 := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	unsigned := b64(map[string]any{"alg": "none", "typ": "JWT", "kid": idp.KeyID()}) + "." + b64(claims(nil)) + "."
	// HS256 keyed with the issuer's public key material: the classic key
	// confusion.
	hsInput := b64(map[string]any{"alg": "HS256", "typ": "JWT", "kid": idp.KeyID()}) + "." + b64(claims(nil))
	mac := hmac.New(sha256.New, idp.JWKS())
	mac.Write([]byte(hsInput))
	hs256 := hsInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + b64(claims(map[string]any{"sub": "admin"})) + "." + parts[2]
	exchange := func(subject string, extra ...string) url.Values {
		v := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {subject},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}, "resource": {files}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return v
	}
	key, _ := dpop.GenerateKey()
	signer, _ := dpop.NewSigner(key, nil)
	wrongHTU, _ := signer.Proof("POST", broker+"/other", "", "")
	form := "application/x-www-form-urlencoded"

	cases := []regressionCase{
		// Hostile subject tokens.
		{class: "subject tokens", name: "alg none", form: exchange(unsigned), status: 400, code: "invalid_request"},
		{class: "subject tokens", name: "HS256 keyed with the public key", form: exchange(hs256), status: 400, code: "invalid_request"},
		{class: "subject tokens", name: "tampered payload", form: exchange(tampered), status: 400, code: "invalid_request"},
		{class: "subject tokens", name: "expired", form: exchange(idp.Sign(claims(map[string]any{"exp": now - 600, "iat": now - 900}), nil)), status: 400, code: "invalid_request"},
		{class: "subject tokens", name: "not yet valid", form: exchange(idp.Sign(claims(map[string]any{"nbf": now + 600}), nil)), status: 400, code: "invalid_request"},
		{class: "subject tokens", name: "for another audience", form: exchange(idp.Sign(claims(map[string]any{"aud": "https://elsewhere.example"}), nil)), status: 400, code: "invalid_request"},
		{class: "subject tokens", name: "an untrusted issuer", form: exchange(other.Sign(claims(map[string]any{"iss": other.URL}), nil)), status: 400, code: "invalid_request"},
		{class: "subject tokens", name: "no sub", form: exchange(idp.Sign(claims(map[string]any{"sub": nil}), nil)), status: 400, code: "invalid_request"},
		{class: "subject tokens", name: "garbage", form: exchange("not.a.jwt"), status: 400, code: "invalid_request"},
		{class: "subject tokens", name: "an identity no map grants", form: exchange(idp.Sign(claims(map[string]any{"sub": "stranger"}), nil)), status: 400, code: "invalid_request"},
		// Form abuse at the token endpoint.
		{class: "token endpoint form", name: "GET", method: "GET", status: 405, code: "invalid_request"},
		{class: "token endpoint form", name: "JSON body", raw: `{"grant_type":"client_credentials"}`, header: map[string]string{"Content-Type": "application/json"}, status: 400, code: "invalid_request"},
		{class: "token endpoint form", name: "parameters in the query", path: "/token?grant_type=client_credentials", form: exchange(good), status: 400, code: "invalid_request"},
		{class: "token endpoint form", name: "a repeated parameter", raw: exchange(good).Encode() + "&grant_type=x", header: map[string]string{"Content-Type": form}, status: 400, code: "invalid_request"},
		{class: "token endpoint form", name: "an unknown grant", form: url.Values{"grant_type": {"password"}, "username": {"a"}, "password": {"b"}}, status: 400, code: "unsupported_grant_type"},
		{class: "token endpoint form", name: "a client secret (none exist)", form: exchange(good), header: map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("agent:secret"))}, status: 401, code: "invalid_client"},
		{class: "token endpoint form", name: "a body over 64 KiB", raw: "grant_type=x&pad=" + strings.Repeat("a", 70<<10), header: map[string]string{"Content-Type": form}, status: 413, code: "invalid_request"},
		{class: "token endpoint form", name: "a resource that is not https", form: exchange(good, "resource", "http://files.example.com/mcp"), status: 400, code: "invalid_target"},
		{class: "token endpoint form", name: "two resources", raw: exchange(good).Encode() + "&resource=" + url.QueryEscape("https://other.example.com/mcp"), header: map[string]string{"Content-Type": form}, status: 400, code: "invalid_target"},
		{class: "token endpoint form", name: "a scope beyond the grant", form: exchange(good, "scope", "files:write"), status: 400, code: "invalid_scope"},
		{class: "token endpoint form", name: "a client_id other than the decided", form: exchange(good, "client_id", "someone-else"), status: 401, code: "invalid_client"},
		// Delegation and user tokens.
		{class: "delegation", name: "an access token as subject without an actor", form: url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token": {good}, "subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}, "resource": {files}}, status: 400, code: "invalid_request"},
		{class: "delegation", name: "a foreign token as the access token subject", form: url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token": {good}, "subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}, "resource": {files},
			"actor_token": {good}, "actor_token_type": {"urn:ietf:params:oauth:token-type:jwt"}}, status: 400, code: "invalid_request"},
		// DPoP.
		{class: "DPoP", name: "a map requiring DPoP, no proof", form: exchange(idp.Sign(claims(map[string]any{"sub": "bound"}), nil)), status: 400, code: "invalid_dpop_proof"},
		{class: "DPoP", name: "a proof for another URL", form: exchange(good), header: map[string]string{"DPoP": wrongHTU}, status: 400, code: "invalid_dpop_proof"},
		{class: "DPoP", name: "a proof that is not a JWT", form: exchange(good), header: map[string]string{"DPoP": "x"}, status: 400, code: "invalid_dpop_proof"},
		// Introspection and revocation.
		{class: "introspection and revocation", name: "introspection without authentication", path: "/introspect", form: url.Values{"token": {good}}, status: 401, code: "invalid_client"},
		{class: "introspection and revocation", name: "introspection by a workload that is no caller", path: "/introspect",
			form: url.Values{"token": {good}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {good}}, status: 401, code: "invalid_client"},
		{class: "introspection and revocation", name: "revocation without authentication", path: "/revoke", form: url.Values{"token": {good}}, status: 401, code: "invalid_client"},
		// Admin API.
		{class: "admin API", name: "no credentials", method: "GET", path: "/admin/v1/trust-maps", status: 401, code: "unauthenticated"},
		{class: "admin API", name: "a workload token as bearer", method: "GET", path: "/admin/v1/trust-maps", header: map[string]string{"Authorization": "Bearer " + good}, status: 401, code: "unauthenticated"},
		{class: "admin API", name: "a revocation without credentials", method: "POST", path: "/admin/v1/revocations", raw: `{"client":"agent"}`, status: 401, code: "unauthenticated"},
		// Browser flows.
		{class: "browser flows", name: "an unknown client", method: "GET", path: "/authorize?response_type=code&client_id=x&redirect_uri=https%3A%2F%2Fevil.example%2Fcb", status: 400},
		{class: "browser flows", name: "a login callback without state", method: "GET", path: "/login/callback?code=x", status: 400},
		{class: "browser flows", name: "a consent answer without its token", path: "/consent", form: url.Values{"decision": {"approve"}}, status: 400},
	}
	counts := map[string]int{}
	for _, tc := range cases {
		method, path := tc.method, tc.path
		if method == "" {
			method = "POST"
		}
		if path == "" {
			path = "/token"
		}
		var body io.Reader
		switch {
		case tc.raw != "":
			body = strings.NewReader(tc.raw)
		case tc.form != nil:
			body = strings.NewReader(tc.form.Encode())
		}
		req, _ := http.NewRequest(method, broker+path, body)
		if tc.form != nil {
			req.Header.Set("Content-Type", form)
		}
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s/%s: %v", tc.class, tc.name, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var answer map[string]any
		json.Unmarshal(raw, &answer)
		got, _ := answer["error"].(string)
		if resp.StatusCode != tc.status || (tc.code != "" && got != tc.code) || resp.Header.Get("Location") != "" {
			t.Errorf("%s / %s: %d %q (Location %q), want %d %q", tc.class, tc.name, resp.StatusCode, got, resp.Header.Get("Location"), tc.status, tc.code)
		}
		if strings.Contains(string(raw), parts[2]) {
			t.Errorf("%s / %s: the answer echoes a token", tc.class, tc.name)
		}
		counts[tc.class]++
	}
	t.Logf("%d cases: %v", len(cases), counts)
}
