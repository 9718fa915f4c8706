package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/mcpsts/mcpsts/attest/aws"
	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/gateway"
	"github.com/mcpsts/mcpsts/internal/awsfake"
	"github.com/mcpsts/mcpsts/resource"
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
	// resource sends the request to the resource server instead of the
	// broker; code is then the error of its WWW-Authenticate challenge.
	resource bool
	// gateway sends it to an mcpsts gateway (for other.example.com) in
	// front of an upstream that must never see it.
	gateway bool
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
	const adminAudience = "https://admin.mcpsts.example/admin"
	// A fake STS that checks real SigV4 signatures: AWS evidence.
	creds := sdkaws.Credentials{AccessKeyID: "AKIDFAKEEXAMPLE01", SecretAccessKey: "fake-secret"}
	sts := httptest.NewTLSServer(awsfake.AssumedRole(creds, "us-east-1"))
	t.Cleanup(sts.Close)
	trap := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("a non-allow-listed STS endpoint was contacted") }))
	t.Cleanup(trap.Close)
	stsCA := filepath.Join(dir, "sts.pem")
	os.WriteFile(stsCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sts.Certificate().Raw}), 0o600)
	broker, ca := serveBroker(t, `id: agent
match: {provider: ci, subject: agent}
grant: {client_id: agent, audiences: ["`+files+`", "https://other.example.com/mcp"], scopes: [files:read], may_act: [{provider: ci, subject: files-server}]}
---
id: ops
match: {provider: ci, subject: ops}
grant: {client_id: ops-ci, audiences: ["`+adminAudience+`"], scopes: [mcpsts:admin]}
---
id: role
match: {provider: aws, subject: "arn:aws:iam::111122223333:role/token-client-role"}
grant: {client_id: role, audiences: ["`+files+`"]}
---
id: bound
match: {provider: ci, subject: bound}
grant: {client_id: bound, audiences: ["`+files+`"], require_binding: dpop}
`, fmt.Sprintf(`providers:
  - {name: ci, issuer: %s, discovery: true, ca_file: %s}
  - {name: corp, kind: user, issuer: %s, discovery: true, ca_file: %s, id_jag: true, login: {client_id: mcpsts, client_secret_file: %s}}
aws: {enabled: true, sts_hosts: ["%s"], sts_ca_file: %s}
admin: {audience: "%s"}
registration: {dynamic: true}`,
		idp.URL, idpCA, corp.URL, corpCA, secret, strings.TrimPrefix(sts.URL, "https://"), stsCA, adminAudience))
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
	awsEvidence := func(endpoint, audience string, c sdkaws.Credentials, at time.Time) string {
		ev, err := aws.BuildEvidence(context.Background(), credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, ""), "us-east-1", endpoint, audience, at)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	sigv4 := func(evidence string) url.Values {
		return url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {evidence},
			"subject_token_type": {aws.TokenType}, "resource": {files}}
	}
	goodAWS := awsEvidence(sts.URL, broker, creds, time.Now())
	rawAWS, _ := url.QueryUnescape(goodAWS)
	wrongSecret := creds
	wrongSecret.SecretAccessKey = "not-the-secret"

	// A resource server (the resource package) in front of a tool, trusting
	// this broker: tokens the broker really issued, used wrongly.
	rs, err := resource.New(resource.Config{Resource: files, Issuer: broker, Transport: c.Transport,
		ToolScopes: map[string][]string{"write_file": {"files:write"}}})
	if err != nil {
		t.Fatal(err)
	}
	mcp := httptest.NewTLSServer(rs.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{}`)) })))
	t.Cleanup(mcp.Close)
	issue := func(form url.Values, header ...string) string {
		req, _ := http.NewRequest("POST", broker+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		tok, ok := body["access_token"].(string)
		if !ok {
			t.Fatalf("no token for the resource cases: %d %v", resp.StatusCode, body)
		}
		return tok
	}
	access := issue(exchange(idp.Sign(claims(map[string]any{"jti": "rs-1"}), nil), "scope", "files:read"))
	otherAudience := issue(exchange(idp.Sign(claims(map[string]any{"jti": "rs-2"}), nil), "resource", "https://other.example.com/mcp"))
	boundProof, _ := signer.Proof("POST", broker+"/token", "", "")
	bound := issue(exchange(idp.Sign(claims(map[string]any{"sub": "bound", "jti": "rs-3"}), nil)), "DPoP", boundProof)
	ap := strings.Split(access, ".")
	accessTampered := ap[0] + "." + b64(map[string]any{"scope": "files:read files:write"}) + "." + ap[2]
	toolsCall := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write_file","arguments":{}}}`
	// Finding 1 of the decision review: tokens revoked at the broker (by
	// their own client, at /revoke) before their first use.
	revoke := func(tok, sub string) string {
		resp, err := c.PostForm(broker+"/revoke", url.Values{"token": {tok}, "client_assertion": {idp.Sign(claims(map[string]any{"sub": sub, "jti": "rv-" + tok[len(tok)-8:]}), nil)},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("revoke: %v %v", resp, err)
		}
		resp.Body.Close()
		return tok
	}
	adminToken := func(jti string) string {
		return issue(exchange(idp.Sign(claims(map[string]any{"sub": "ops", "jti": jti}), nil), "resource", adminAudience, "scope", "mcpsts:admin"))
	}
	liveAdmin, revokedAdmin := adminToken("adm-1"), revoke(adminToken("adm-2"), "ops")
	incoming := func(jti string) string {
		return issue(exchange(idp.Sign(claims(map[string]any{"jti": jti}), nil), "scope", "files:read"))
	}
	liveIncoming, revokedIncoming := incoming("in-1"), revoke(incoming("in-2"), "agent")
	delegate := func(subject string) url.Values {
		return url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {subject},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}, "resource": {"https://other.example.com/mcp"},
			"actor_token": {idp.Sign(claims(map[string]any{"sub": "files-server", "jti": "act-" + subject[len(subject)-8:]}), nil)}, "actor_token_type": {"urn:ietf:params:oauth:token-type:jwt"}}
	}
	newMap := `{"match":{"provider":"ci","subject":"attacker"},"grant":{"client_id":"x","audiences":["` + adminAudience + `"],"scopes":["mcpsts:admin"]}}`
	bearer := func(tok string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
	}

	// A gateway in front of an upstream that must not be reached by the
	// gateway cases.
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Regression") == "must-not-reach" {
			t.Errorf("the gateway forwarded a request it must refuse: %v", r.Header)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
	}))
	t.Cleanup(upstream.Close)
	gwRS, err := resource.New(resource.Config{Resource: "https://other.example.com/mcp", Issuer: broker, Transport: c.Transport})
	if err != nil {
		t.Fatal(err)
	}
	var gwHandler http.Handler
	gwSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { gwHandler.ServeHTTP(w, r) }))
	t.Cleanup(gwSrv.Close)
	// The gateway is other.example.com's, reached here by its address.
	gw, err := gateway.New(gateway.Config{Resource: gwRS, Upstream: upstream.URL + "/mcp", AllowedHosts: []string{strings.TrimPrefix(gwSrv.URL, "https://")}})
	if err != nil {
		t.Fatal(err)
	}
	gwHandler = gw.Handler()
	go gwRS.Run(t.Context())
	gwHeaders := func(extra ...string) map[string]string {
		h := map[string]string{"Authorization": "Bearer " + otherAudience, "Content-Type": "application/json",
			"Accept": "application/json, text/event-stream", "X-Regression": "must-not-reach"}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	listTools := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`

	// A client registered dynamically: nobody vetted its redirect URI.
	regResp, err := c.Post(broker+"/register", "application/json", strings.NewReader(`{"client_name":"Claude Desktop","redirect_uris":["https://app.attacker.example/cb"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var registered map[string]any
	json.NewDecoder(regResp.Body).Decode(&registered)
	regResp.Body.Close()
	dcrClient, _ := registered["client_id"].(string)
	if regResp.StatusCode != 201 || dcrClient == "" {
		t.Fatalf("registration: %d %v", regResp.StatusCode, registered)
	}

	cases := []regressionCase{
		// The gateway's edge (issue 32): names CGI/WSGI servers read as the
		// gateway's own, and protocol upgrades.
		{class: "gateway", name: "X_MCPSTS_Scopes (read as X-MCPSTS-Scopes by WSGI)", gateway: true, raw: listTools, header: gwHeaders("X_MCPSTS_Scopes", "admin files:write"), status: 400},
		{class: "gateway", name: "X_MCPSTS_Actor", gateway: true, raw: listTools, header: gwHeaders("X_MCPSTS_Actor", "workload:ci/files-server"), status: 400},
		{class: "gateway", name: "Mcp_Session_Id (past the owner check)", gateway: true, raw: listTools, header: gwHeaders("Mcp_Session_Id", "another-callers"), status: 400},
		{class: "gateway", name: "an Mcp-Session-Id the gateway does not know (no owner check possible)", gateway: true, raw: listTools, header: gwHeaders("Mcp-Session-Id", "guessed-or-from-before-a-restart"), status: 404},
		{class: "gateway", name: "another site's Host (DNS rebinding), no Origin", gateway: true, raw: listTools, header: gwHeaders("Host", "rebind.attacker.example"), status: 421},
		{class: "gateway", name: "an Upgrade to another protocol", gateway: true, raw: listTools, header: gwHeaders("Connection", "Upgrade", "Upgrade", "websocket"), status: 400},

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
		{class: "delegation", name: "a live incoming token (the control)", form: delegate(liveIncoming), status: 200},
		{class: "delegation", name: "a revoked incoming token", form: delegate(revokedIncoming), status: 400, code: "invalid_request"},
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
		{class: "admin API", name: "a live admin token lists the maps (the control)", method: "GET", path: "/admin/v1/trust-maps", header: map[string]string{"Authorization": "Bearer " + liveAdmin}, status: 200},
		{class: "admin API", name: "a revoked admin token writes a map", method: "PUT", path: "/admin/v1/trust-maps/escalate", raw: newMap,
			header: map[string]string{"Authorization": "Bearer " + revokedAdmin, "If-None-Match": "*", "Content-Type": "application/json"}, status: 401, code: "unauthenticated"},
		{class: "admin API", name: "a revoked admin token lists the maps", method: "GET", path: "/admin/v1/trust-maps", header: map[string]string{"Authorization": "Bearer " + revokedAdmin}, status: 401, code: "unauthenticated"},
		// Enterprise-managed authorization (ID-JAGs).
		{class: "ID-JAGs", name: "an ID-JAG from a workload provider", form: url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "client_id": {"agent"},
			"assertion": {idp.Sign(claims(map[string]any{"client_id": "agent", "resource": files, "jti": "jag-1"}), map[string]any{"typ": "oauth-id-jag+jwt"})}}, status: 400, code: "invalid_grant"},
		{class: "ID-JAGs", name: "a corporate IdP's ID-JAG living 10 minutes (issue 32: at most 5 by default)", form: url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "client_id": {"agent"},
			"assertion": {corp.Sign(map[string]any{"iss": corp.URL, "sub": "alice", "aud": broker, "client_id": "agent", "resource": files, "jti": "long-jag", "iat": now, "exp": now + 600}, map[string]any{"typ": "oauth-id-jag+jwt"})}}, status: 400, code: "invalid_grant"},
		{class: "ID-JAGs", name: "an ID-JAG as a token exchange's subject", form: exchange(idp.Sign(claims(map[string]any{"jti": "jag-2"}), map[string]any{"typ": "oauth-id-jag+jwt"})), status: 400, code: "invalid_request"},
		{class: "ID-JAGs", name: "an ID-JAG asked for without client authentication", form: url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"requested_token_type": {"urn:ietf:params:oauth:token-type:id-jag"}, "subject_token_type": {"urn:ietf:params:oauth:token-type:id_token"},
			"subject_token": {corp.Sign(map[string]any{"iss": corp.URL, "sub": "alice", "aud": broker, "iat": now, "exp": now + 300}, nil)},
			"audience":      {"https://as.example.com"}, "resource": {files}}, status: 401, code: "invalid_client"},
		{class: "ID-JAGs", name: "an ID-JAG asked for with a workload's token", form: url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"requested_token_type": {"urn:ietf:params:oauth:token-type:id-jag"}, "subject_token": {good}, "subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"},
			"audience": {"https://as.example.com"}, "resource": {files}}, status: 400, code: "invalid_request"},
		// SigV4 evidence (AWS): every refusal before STS but a bad signature,
		// which the fake STS refuses as the real one does.
		{class: "SigV4 evidence", name: "another broker's evidence", form: sigv4(awsEvidence(sts.URL, "https://other-broker.example.com", creds, time.Now())), status: 400, code: "invalid_request"},
		{class: "SigV4 evidence", name: "a stale signature", form: sigv4(awsEvidence(sts.URL, broker, creds, time.Now().Add(-20*time.Minute))), status: 400, code: "invalid_request"},
		{class: "SigV4 evidence", name: "an endpoint not allow-listed", form: sigv4(awsEvidence(trap.URL, broker, creds, time.Now())), status: 400, code: "invalid_request"},
		{class: "SigV4 evidence", name: "a bad signature", form: sigv4(awsEvidence(sts.URL, broker, wrongSecret, time.Now())), status: 400, code: "invalid_request"},
		{class: "SigV4 evidence", name: "the audience header not signed", form: sigv4(url.QueryEscape(strings.Replace(rawAWS, ";x-mcpsts-audience", "", 1))), status: 400, code: "invalid_request"},
		{class: "SigV4 evidence", name: "another action", form: sigv4(url.QueryEscape(strings.Replace(rawAWS, "GetCallerIdentity", "AssumeRole", 1))), status: 400, code: "invalid_request"},
		{class: "SigV4 evidence", name: "components appended to Authorization", form: sigv4(url.QueryEscape(strings.Replace(rawAWS, `"Authorization","value":"`, `"Authorization","value":"AWS4-HMAC-SHA256 Credential=x, `, 1))), status: 400, code: "invalid_request"},
		{class: "SigV4 evidence", name: "not URL-escaped JSON", form: sigv4("%zz"), status: 400, code: "invalid_request"},
		{class: "SigV4 evidence", name: "valid evidence, first use", form: sigv4(goodAWS), status: 200},
		{class: "SigV4 evidence", name: "the same evidence replayed", form: sigv4(goodAWS), status: 400, code: "invalid_request"},
		// A resource server verifying the broker's tokens: the error of the
		// WWW-Authenticate challenge, or of the body of a 400.
		{class: "resource server", resource: true, name: "no token", raw: `{}`, header: map[string]string{"Content-Type": "application/json"}, status: 401},
		{class: "resource server", resource: true, name: "a token for another resource", raw: `{}`, header: bearer(otherAudience), status: 401, code: "invalid_token"},
		{class: "resource server", resource: true, name: "a tampered token", raw: `{}`, header: bearer(accessTampered), status: 401, code: "invalid_token"},
		{class: "resource server", resource: true, name: "the workload's own token (passthrough)", raw: `{}`, header: bearer(good), status: 401, code: "invalid_token"},
		{class: "resource server", resource: true, name: "a tool beyond the token's scopes", raw: toolsCall, header: bearer(access), status: 403, code: "insufficient_scope"},
		{class: "resource server", resource: true, name: "the token in the query", path: "/mcp?access_token=" + access, raw: `{}`, header: map[string]string{"Content-Type": "application/json"}, status: 400, code: "invalid_request"},
		{class: "resource server", resource: true, name: "a DPoP-bound token as a bearer token", raw: `{}`, header: bearer(bound), status: 401, code: "invalid_token"},
		{class: "resource server", resource: true, name: "two Authorization schemes", raw: `{}`, header: map[string]string{"Authorization": "Bearer " + access + ", Bearer " + access, "Content-Type": "application/json"}, status: 400, code: "invalid_request"},
		// Browser flows.
		{class: "browser flows", name: "an unknown client", method: "GET", path: "/authorize?response_type=code&client_id=x&redirect_uri=https%3A%2F%2Fevil.example%2Fcb", status: 400},
		{class: "browser flows", name: "a login callback without state", method: "GET", path: "/login/callback?code=x", status: 400},
		{class: "browser flows", name: "a consent answer without its token", path: "/consent", form: url.Values{"decision": {"approve"}}, status: 400},
		{class: "browser flows", name: "a dynamically registered client's bad request (no open redirector, issue 32)", method: "GET",
			path: "/authorize?response_type=code&client_id=" + dcrClient + "&redirect_uri=https%3A%2F%2Fapp.attacker.example%2Fcb&code_challenge=x&code_challenge_method=plain&state=s", status: 400},
		{class: "browser flows", name: "a registered redirect URI whose IPv6 zone carries a CSP directive", path: "/register",
			raw: `{"client_name":"x","redirect_uris":["https://[fe80::1%25;frame-ancestors%20https:;]/cb"]}`, header: map[string]string{"Content-Type": "application/json"}, status: 400, code: "invalid_redirect_uri"},
	}
	counts := map[string]int{}
	for _, tc := range cases {
		method, path := tc.method, tc.path
		if method == "" {
			method = "POST"
		}
		base := broker
		switch {
		case tc.gateway:
			base = gwSrv.URL
			if path == "" {
				path = "/mcp"
			}
		case tc.resource:
			base = mcp.URL
			if path == "" {
				path = "/mcp"
			}
		case path == "":
			path = "/token"
		}
		var body io.Reader
		switch {
		case tc.raw != "":
			body = strings.NewReader(tc.raw)
		case tc.form != nil:
			body = strings.NewReader(tc.form.Encode())
		}
		req, _ := http.NewRequest(method, base+path, body)
		if tc.form != nil {
			req.Header.Set("Content-Type", form)
		}
		for k, v := range tc.header {
			if k == "Host" {
				req.Host = v
				continue
			}
			req.Header[k] = []string{v} // as spelled: X_MCPSTS_Scopes stays so
		}
		client := c
		switch {
		case tc.resource:
			client = mcp.Client()
		case tc.gateway:
			client = gwSrv.Client()
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s/%s: %v", tc.class, tc.name, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var answer map[string]any
		json.Unmarshal(raw, &answer)
		got, _ := answer["error"].(string)
		if tc.resource { // the challenge's error, else the body's (a 400 has no challenge)
			if m := regexp.MustCompile(`error="([^"]+)"`).FindStringSubmatch(resp.Header.Get("WWW-Authenticate")); m != nil {
				got = m[1]
			}
			if resp.StatusCode == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata=") {
				t.Errorf("%s / %s: a 401 without resource_metadata in its challenge", tc.class, tc.name)
			}
		}
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
