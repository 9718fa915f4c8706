package exchange_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/trustmaps"
)

const (
	files    = "https://files.example.com/mcp"
	remoteAS = "https://as.example.com"
)

// clientMap is a registry of registered (public) clients.
type clientMap map[string]exchange.Client

func (m clientMap) Client(_ context.Context, id string) (exchange.Client, bool, error) {
	c, ok := m[id]
	return c, ok, nil
}

// idjagEnv serves the endpoint with a corporate IdP whose ID-JAGs it
// accepts (corp: users, id_jag, ID tokens issued to the client desktop),
// a user provider that issues none (partner), the workload issuer (ci: the
// desktop app's own credential for private_key_jwt), a registered public
// client desktop, and maps: engineers may reach files through any client,
// and ID-JAGs for them may name remoteAS or this server.
func idjagEnv(t *testing.T) (*env, *federationtest.Issuer, *federationtest.Issuer) {
	t.Helper()
	e := newEnv(t)
	corp, partner := federationtest.NewIssuer(t), federationtest.NewIssuer(t)
	clock := e.clock
	provider := func(name string, is *federationtest.Issuer) *federation.Provider {
		p, err := federation.NewProvider(federation.ProviderConfig{Name: name, Issuer: is.URL, Discovery: true, Fetcher: is.Fetcher(), Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	v, err := oidc.New(clock,
		oidc.ProviderConfig{Keys: e.prov, Audiences: []string{broker}},
		oidc.ProviderConfig{Keys: provider("corp", corp), Audiences: []string{broker, "desktop"}, Users: true, IDJAG: true},
		oidc.ProviderConfig{Keys: provider("partner", partner), Audiences: []string{broker}, Users: true},
	)
	if err != nil {
		t.Fatal(err)
	}
	att := attest.SingleUse(v, &memCache{held: map[string]time.Time{}})
	eng, err := trustmaps.Compile(trustmaps.Document{Name: "maps.yaml", Data: []byte(`id: engineers
match: {provider: corp, subject_pattern: ".+", conditions: ['"engineering" in identity.attributes.groups']}
grant:
  client_id_expr: request.client_id
  audiences: ["` + files + `"]
  scopes: [files:read, files:write]
  default_scopes: [files:read]
  authorization_servers: ["` + remoteAS + `", "` + broker + `"]
---
id: partners
match: {provider: partner, subject_pattern: ".+"}
grant: {client_id_expr: request.client_id, audiences: ["` + files + `"], scopes: [files:read]}
---
id: desktop-app
match: {provider: ci, subject: desktop-app}
grant: {client_id: desktop, audiences: ["` + files + `"]}
`)})
	if err != nil {
		t.Fatal(err)
	}
	e.restart(t, func(c *exchange.Config) {
		c.Attestors = map[string]attest.Attestor{exchange.TokenTypeJWT: att, exchange.TokenTypeIDToken: att, exchange.GrantJWTBearer: att}
		c.Decider = eng
		c.Clients = clientMap{"desktop": {ID: "desktop", GrantTypes: []string{exchange.GrantJWTBearer, exchange.GrantTokenExchange}},
			"other-app": {ID: "other-app", GrantTypes: []string{exchange.GrantJWTBearer}},
			"code-only": {ID: "code-only", GrantTypes: []string{exchange.GrantAuthorizationCode}}}
		c.IDJAGs, c.Replay = e.iss, &memCache{held: map[string]time.Time{}}
		c.ReplayAttributes = eng.ReferencedAttributes // as the server wires it
		c.Revocations = e.revocations(t)
	})
	return e, corp, partner
}

// TestRedeemIDJAG: mcpsts as the MCP authorization server, an ID-JAG from
// the corporate IdP: the token names the user and the client, one
// audience, the ID-JAG's scopes as the map allows; every refusal exact.
func TestRedeemIDJAG(t *testing.T) {
	e, corp, partner := idjagEnv(t)
	n := e.now.Unix()
	var seq int
	jag := func(is *federationtest.Issuer, mut func(map[string]any), header map[string]any) string {
		seq++
		c := map[string]any{"iss": is.URL, "sub": "alice", "aud": broker, "client_id": "desktop", "resource": files, "scope": "files:read",
			"jti": "jag-" + string(rune('a'+seq)), "iat": n, "exp": n + 300, "groups": []string{"engineering"}}
		if mut != nil {
			mut(c)
		}
		if header == nil {
			header = map[string]any{"typ": "oauth-id-jag+jwt"}
		}
		return is.Sign(c, header)
	}
	redeem := func(assertion string, extra ...string) result {
		f := url.Values{"grant_type": {exchange.GrantJWTBearer}, "assertion": {assertion}, "client_id": {"desktop"}}
		for i := 0; i+1 < len(extra); i += 2 {
			if extra[i+1] == "" {
				f.Del(extra[i])
			} else {
				f.Set(extra[i], extra[i+1])
			}
		}
		return e.post(t, f, nil)
	}
	good := jag(corp, nil, nil)
	res := redeem(good)
	if res.status != 200 {
		t.Fatalf("an ID-JAG: %d %v", res.status, res.body)
	}
	claims := verify(t, e, res.body["access_token"].(string))
	if claims["sub"] != "user:corp/alice" || claims["client_id"] != "desktop" || claims["aud"] != files || claims["scope"] != "files:read" || claims["act"] != nil {
		t.Fatalf("claims %v", claims)
	}
	// The desktop app authenticating with its own workload credential.
	assertion := e.subjectToken("desktop-app", nil)
	if res := redeem(jag(corp, nil, nil), "client_assertion_type", exchange.AssertionJWTBearer, "client_assertion", assertion); res.status != 200 {
		t.Fatalf("private_key_jwt: %d %v", res.status, res.body)
	}

	for _, tc := range []struct {
		name   string
		res    result
		status int
		code   string
	}{
		{"replayed", redeem(good), 400, "invalid_grant"},
		{"typ JWT (an ID token, not an ID-JAG)", redeem(jag(corp, nil, map[string]any{"typ": "JWT"})), 400, "invalid_grant"},
		{"no typ", redeem(jag(corp, nil, map[string]any{})), 400, "invalid_grant"},
		{"for another authorization server", redeem(jag(corp, func(c map[string]any) { c["aud"] = remoteAS }, nil)), 400, "invalid_grant"},
		// The provider's audiences hold its clients too (its ID tokens go to
		// them): only the ID-JAG's own check refuses this one.
		{"addressed to a client, not to this server", redeem(jag(corp, func(c map[string]any) { c["aud"] = "desktop" }, nil)), 400, "invalid_grant"},
		{"issued to another client", redeem(jag(corp, func(c map[string]any) { c["client_id"] = "other-app" }, nil)), 400, "invalid_grant"},
		{"no client authentication", redeem(jag(corp, nil, nil), "client_id", ""), 401, "invalid_client"},
		{"a registered public client without the JWT bearer grant", redeem(jag(corp, func(c map[string]any) { c["client_id"] = "code-only" }, nil), "client_id", "code-only"), 400, "unauthorized_client"},
		{"an unregistered public client", redeem(jag(corp, func(c map[string]any) { c["client_id"] = "stranger" }, nil), "client_id", "stranger"), 401, "invalid_client"},
		{"a user's ID token as the client's credential", redeem(jag(corp, nil, nil), "client_assertion_type", exchange.AssertionJWTBearer,
			"client_assertion", corp.Sign(map[string]any{"iss": corp.URL, "sub": "alice", "aud": broker, "iat": n, "exp": n + 300, "jti": "as-user", "groups": []string{"engineering"}}, nil)), 401, "invalid_client"},
		{"a workload credential of another client", redeem(jag(corp, func(c map[string]any) { c["client_id"] = "other-app" }, nil), "client_id", "other-app",
			"client_assertion_type", exchange.AssertionJWTBearer, "client_assertion", e.subjectToken("desktop-app", nil)), 401, "invalid_client"},
		{"expired", redeem(jag(corp, func(c map[string]any) { c["iat"], c["exp"] = n-900, n-600 }, nil)), 400, "invalid_grant"},
		{"no jti", redeem(jag(corp, func(c map[string]any) { delete(c, "jti") }, nil)), 400, "invalid_grant"},
		{"living longer than 5 minutes (issue 32)", redeem(jag(corp, func(c map[string]any) { c["exp"] = n + 301 }, nil)), 400, "invalid_grant"},
		{"from an untrusted issuer", redeem(jag(federationtest.NewIssuer(t), nil, nil)), 400, "invalid_grant"},
		{"from a user provider that issues no ID-JAGs", redeem(jag(partner, nil, nil)), 400, "invalid_grant"},
		{"a resource the maps do not grant", redeem(jag(corp, func(c map[string]any) { c["resource"] = "https://mail.example.com/mcp" }, nil)), 400, "invalid_target"},
		{"a resource parameter other than the ID-JAG's", redeem(jag(corp, nil, nil), "resource", "https://mail.example.com/mcp"), 400, "invalid_target"},
		{"a scope wider than the ID-JAG's", redeem(jag(corp, nil, nil), "scope", "files:write"), 400, "invalid_scope"},
		{"an ID-JAG scope wider than the map's", redeem(jag(corp, func(c map[string]any) { c["scope"] = "files:read admin" }, nil)), 400, "invalid_scope"},
		{"a user the maps do not allow", redeem(jag(corp, func(c map[string]any) { c["sub"], c["groups"] = "bob", []string{"sales"} }, nil)), 400, "invalid_grant"},
		{"an ID-JAG as a token exchange's subject", e.post(t, url.Values{"grant_type": {exchange.GrantTokenExchange}, "subject_token": {jag(corp, nil, nil)},
			"subject_token_type": {exchange.TokenTypeIDToken}, "resource": {files}}, nil), 400, "invalid_request"},
	} {
		if tc.res.status != tc.status || tc.res.body["error"] != tc.code {
			t.Errorf("%s: %d %v, want %d %s", tc.name, tc.res.status, tc.res.body, tc.status, tc.code)
		}
	}
	// Issue 32: whoever sees an ID-JAG cannot use it up: it is claimed
	// only once its own client has authenticated.
	seen := jag(corp, nil, nil)
	for _, theft := range []result{
		redeem(seen, "client_id", ""),
		redeem(seen, "client_id", "stranger"),
		redeem(seen, "client_id", "other-app", "client_assertion_type", exchange.AssertionJWTBearer, "client_assertion", e.subjectToken("desktop-app", nil)),
	} {
		if theft.status == 200 {
			t.Fatalf("a stolen ID-JAG redeemed: %v", theft.body)
		}
	}
	if res := redeem(seen); res.status != 200 {
		t.Fatalf("the ID-JAG after others presented it: %d %v", res.status, res.body)
	}
	if res := redeem(seen); res.status != 400 || res.body["error_description"] != "the ID-JAG was used before" {
		t.Fatalf("the ID-JAG used twice by its client: %d %v", res.status, res.body)
	}
	// An ID-JAG without scopes: the map's default scopes are granted only
	// as far as the ID-JAG goes, that is none.
	if res := redeem(jag(corp, func(c map[string]any) { delete(c, "scope") }, nil)); res.status != 200 || res.body["scope"] != nil && res.body["scope"] != "" {
		t.Errorf("an ID-JAG without scopes: %d %v", res.status, res.body)
	} else if c := verify(t, e, res.body["access_token"].(string)); c["scope"] != nil {
		t.Errorf("an ID-JAG without scopes gave %v", c["scope"])
	}
	// The partner's users have a map: only the ID-JAG issuer check refuses
	// its ID-JAG.
	if res := redeem(jag(partner, nil, nil)); res.status != 400 || e.check() != "not_an_id_jag_issuer" {
		t.Errorf("an ID-JAG of a provider not marked id_jag: %d %v (%s)", res.status, res.body, e.check())
	}
}

// TestIssueIDJAG: mcpsts as the users' identity provider: a user's ID token
// issued to the client becomes an ID-JAG for an authorization server the
// maps list; mcpsts redeems its own for itself; every refusal exact.
func TestIssueIDJAG(t *testing.T) {
	e, corp, _ := idjagEnv(t)
	n := e.now.Unix()
	idToken := func(mut func(map[string]any)) string {
		c := map[string]any{"iss": corp.URL, "sub": "alice", "aud": "desktop", "iat": n, "exp": n + 300, "groups": []string{"engineering"}}
		if mut != nil {
			mut(c)
		}
		return corp.Sign(c, nil)
	}
	ask := func(subject string, extra ...string) result {
		f := url.Values{"grant_type": {exchange.GrantTokenExchange}, "requested_token_type": {exchange.TokenTypeIDJAG},
			"subject_token": {subject}, "subject_token_type": {exchange.TokenTypeIDToken}, "client_id": {"desktop"},
			"audience": {remoteAS}, "resource": {files}, "scope": {"files:read"}}
		for i := 0; i+1 < len(extra); i += 2 {
			if extra[i+1] == "" {
				f.Del(extra[i])
			} else {
				f.Set(extra[i], extra[i+1])
			}
		}
		return e.post(t, f, nil)
	}
	res := ask(idToken(nil))
	if res.status != 200 || res.body["issued_token_type"] != exchange.TokenTypeIDJAG || res.body["token_type"] != "N_A" {
		t.Fatalf("an ID-JAG: %d %v", res.status, res.body)
	}
	if exp := res.body["expires_in"].(float64); exp < 1 || exp > 300 {
		t.Fatalf("expires_in %v", exp)
	}
	jag, err := e.iss.VerifyIDJAG(res.body["access_token"].(string), remoteAS)
	if err != nil || jag.Subject != "user:corp/alice" || jag.ClientID != "desktop" || jag.Resource != files || strings.Join(jag.Scopes, " ") != "files:read" {
		t.Fatalf("the ID-JAG: %+v %v", jag, err)
	}
	// For this server itself: issued, then redeemed here once.
	res = ask(idToken(nil), "audience", broker)
	if res.status != 200 {
		t.Fatalf("an ID-JAG for this server: %d %v", res.status, res.body)
	}
	own := res.body["access_token"].(string)
	redeem := func(extra ...string) result {
		f := url.Values{"grant_type": {exchange.GrantJWTBearer}, "assertion": {own}, "client_id": {"desktop"}}
		for i := 0; i+1 < len(extra); i += 2 {
			f.Set(extra[i], extra[i+1])
		}
		return e.post(t, f, nil)
	}
	if res := redeem("client_id", "stranger"); res.status != 401 || res.body["error"] != "invalid_client" {
		t.Fatalf("our ID-JAG by an unregistered client: %d %v", res.status, res.body)
	}
	res = redeem()
	if res.status != 200 {
		t.Fatalf("redeeming our own ID-JAG: %d %v", res.status, res.body)
	}
	claims := verify(t, e, res.body["access_token"].(string))
	if claims["sub"] != "user:corp/alice" || claims["client_id"] != "desktop" || claims["aud"] != files || claims["scope"] != "files:read" {
		t.Fatalf("claims %v", claims)
	}
	if res := redeem(); res.status != 400 || res.body["error"] != "invalid_grant" || e.check() != "token_replayed" {
		t.Fatalf("our ID-JAG again: %d %v (%s)", res.status, res.body, e.check())
	}
	// Finding 3 of the decision review: a resource other than the
	// ID-JAG's is invalid_target, not a token for the ID-JAG's.
	own = ask(idToken(nil), "audience", broker).body["access_token"].(string)
	if res := redeem("resource", "https://mail.example.com/mcp"); res.status != 400 || res.body["error"] != "invalid_target" {
		t.Fatalf("our ID-JAG for another resource: %d %v", res.status, res.body)
	}
	own = ask(idToken(nil), "audience", broker).body["access_token"].(string)
	if res := redeem("scope", "files:write"); res.status != 400 || res.body["error"] != "invalid_scope" {
		t.Fatalf("our ID-JAG for a scope wider than it: %d %v", res.status, res.body)
	}
	// The revocation list holds for our ID-JAGs: a person revoked (by
	// their sub) after it was issued cannot redeem it.
	own = ask(idToken(nil), "audience", broker).body["access_token"].(string)
	if err := e.revoked.Revoke(context.Background(), exchange.RevokeSubject, "user:corp/alice", e.now, e.now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if res := redeem(); res.status != 400 || res.body["error"] != "invalid_grant" || e.check() != "token_revoked" {
		t.Fatalf("our ID-JAG of a revoked person: %d %v (%s)", res.status, res.body, e.check())
	}
	e.setNow(e.now.Add(time.Second)) // ID-JAGs issued after the revocation are good
	// Another registered client cannot redeem it.
	res = ask(idToken(nil), "audience", broker)
	own = res.body["access_token"].(string)
	if res := redeem("client_id", "other-app"); res.status != 400 || res.body["error"] != "invalid_grant" || e.check() != "id_jag_client" {
		t.Fatalf("our ID-JAG by another client: %d %v (%s)", res.status, res.body, e.check())
	}

	for _, tc := range []struct {
		name   string
		res    result
		status int
		code   string
	}{
		{"an ID token issued to another client", ask(idToken(func(c map[string]any) { c["aud"] = broker })), 400, "invalid_request"},
		{"a user the maps do not allow", ask(idToken(func(c map[string]any) { c["sub"], c["groups"] = "bob", []string{"sales"} })), 400, "invalid_request"},
		{"an authorization server not listed", ask(idToken(nil), "audience", "https://evil.example.com"), 400, "invalid_target"},
		{"no authorization server", ask(idToken(nil), "audience", ""), 400, "invalid_target"},
		{"a resource not granted", ask(idToken(nil), "resource", "https://mail.example.com/mcp"), 400, "invalid_target"},
		{"a scope not granted", ask(idToken(nil), "scope", "admin"), 400, "invalid_scope"},
		{"no client authentication", ask(idToken(nil), "client_id", ""), 401, "invalid_client"},
		{"an unregistered client", ask(idToken(nil), "client_id", "stranger"), 401, "invalid_client"},
		{"an ID token for an audience the provider does not know", ask(idToken(func(c map[string]any) { c["aud"] = "stranger" })), 400, "invalid_request"},
		{"a workload's token as subject", ask(e.subjectToken("desktop-app", nil), "subject_token_type", exchange.TokenTypeJWT), 400, "invalid_request"},
		{"an access token as subject", ask(own, "subject_token_type", exchange.TokenTypeAccessToken), 400, "invalid_request"},
	} {
		if tc.res.status != tc.status || tc.res.body["error"] != tc.code {
			t.Errorf("%s: %d %v, want %d %s", tc.name, tc.res.status, tc.res.body, tc.status, tc.code)
		}
	}
}
