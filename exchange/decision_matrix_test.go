package exchange_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

// The decision-path matrix: every grant of the token endpoint × every map
// property that shapes or refuses a token, each cell an exact outcome,
// against the real endpoint and store. The grants are checked against the
// dispatch table and the properties against the map schema, so that a new
// grant or a new property that the matrix does not cover fails it.

const ledgerMCP = "https://ledger.example.com/mcp"

// property is a map property under test: a condition added to the map's
// match, or lines added to its grant; removed: the map is removed after
// the first token.
type property struct {
	name      string
	condition string
	grant     string
	removed   bool
	// ok, for a property that shapes the token: what the token must show.
	shape func(claims map[string]any) string
	want  string
	// refused, for one that refuses it: the error, or "" for the
	// grant's own code of a policy refusal.
	refused string
}

var matrixProperties = []property{
	{name: "require_binding: dpop", grant: "require_binding: dpop", refused: "invalid_dpop_proof"},
	{name: "require_binding: mtls", grant: "require_binding: mtls", refused: "invalid_request"},
	{name: "single_use", grant: "single_use: true", shape: func(c map[string]any) string { return fmt.Sprint(c["single_use"]) }, want: "true"},
	{name: "claims", grant: "claims: {tenant: acme}", shape: func(c map[string]any) string { return fmt.Sprint(c["tenant"]) }, want: "acme"},
	{name: "max_ttl", grant: "max_ttl: 5m", shape: func(c map[string]any) string { return fmt.Sprint(c["exp"].(float64) - c["iat"].(float64)) }, want: "300"},
	{name: "source address condition", condition: `ip(request.source_ip).in_cidr("10.0.0.0/8")`},
	{name: "posture source down, on_error deny", condition: `context.mdm.managed == true`},
	{name: "map removed after the first token", removed: true},
}

// Map schema fields that shape or refuse a token, by the property rows
// that test them; and those that do not, with where they are tested.
var (
	coveredFields = map[string]string{
		"require_binding": "require_binding: dpop", "single_use": "single_use", "claims": "claims", "max_ttl": "max_ttl",
		"conditions": "source address condition",
	}
	otherFields = map[string]string{
		"client_id": "every row (the token's client)", "client_id_expr": "every person row", "audiences": "every row (the token's aud)",
		"scopes": "every row", "default_scopes": "TestTokenExchangeSuccess", "may_act": "the delegation row; TestDelegation",
		"authorization_servers": "the ID-JAG rows; TestIssueIDJAG",
		"provider":              "every row", "subject": "every row", "subject_pattern": "TestCompile (trustmaps)",
	}
)

// TestDecisionMatrixCoversTheSchema fails when the map schema gains a
// field the matrix neither tests nor names as tested elsewhere.
func TestDecisionMatrixCoversTheSchema(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[trustmaps.Grant](), reflect.TypeFor[trustmaps.Match]()} {
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			if _, ok := coveredFields[name]; ok {
				continue
			}
			if _, ok := otherFields[name]; !ok {
				t.Errorf("map field %s.%s is in no row of the decision matrix", typ.Name(), name)
			}
		}
	}
	for field, row := range coveredFields {
		if !slices.ContainsFunc(matrixProperties, func(p property) bool { return p.name == row }) {
			t.Errorf("field %s names the row %q, which does not exist", field, row)
		}
	}
}

// matrixEnv is one endpoint with every grant on: workloads (ci), people
// (corp, who may sign in and whose IdP issues ID-JAGs), DPoP, a store for
// codes, refresh tokens, consents, revocations and single use, a posture
// source that is down, and mcpsts issuing ID-JAGs.
type matrixEnv struct {
	*env
	st      *store.Store
	corp    *federationtest.Issuer
	support string // maps beside the one under test
}

type unavailablePosture struct{}

func (unavailablePosture) Evaluate(_ context.Context, _ attest.Identity, _ []string, read func(string) bool) []attest.Posture {
	if !read("mdm") {
		return nil
	}
	return []attest.Posture{{Source: "mdm", Status: attest.PostureUnavailable, Reason: "unreachable"}}
}

func newMatrixEnv(t *testing.T) *matrixEnv {
	t.Helper()
	e := newEnv(t)
	m := &matrixEnv{env: e, corp: federationtest.NewIssuer(t)}
	clock := e.clock
	corp, err := federation.NewProvider(federation.ProviderConfig{Name: "corp", Issuer: m.corp.URL, Discovery: true, Fetcher: m.corp.Fetcher(), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	v, err := oidc.New(clock,
		oidc.ProviderConfig{Keys: e.prov, Audiences: []string{broker, broker + "/token"}},
		oidc.ProviderConfig{Keys: corp, Audiences: []string{broker, "desktop"}, Users: true, IDJAG: true},
	)
	if err != nil {
		t.Fatal(err)
	}
	att := attest.SingleUse(v, &memCache{held: map[string]time.Time{}})
	m.st, err = store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "s.db"), store.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.st.Close() })
	// alice consented to the desktop client and to the payments agent.
	for _, c := range []string{"desktop", "payments-ci"} {
		if _, err := m.st.GrantConsent(context.Background(), consent.Consent{User: "alice", Provider: "corp", ClientID: c,
			Scopes: []string{"payments:read", exchange.ScopeOfflineAccess}, Resources: []string{paymentsMCP}, ExpiresAt: e.now.Add(24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	e.cfg.Attestors = map[string]attest.Attestor{exchange.TokenTypeJWT: att, exchange.TokenTypeIDToken: att, exchange.GrantJWTBearer: att}
	e.cfg.Consents, e.cfg.Authorizations, e.cfg.Replay, e.cfg.Revocations = m.st, m.st, m.st, m.st
	e.cfg.Clients = clientMap{"desktop": {ID: "desktop", GrantTypes: []string{exchange.GrantJWTBearer, exchange.GrantTokenExchange, exchange.GrantAuthorizationCode}}}
	e.cfg.IDJAGs, e.cfg.Posture, e.cfg.TokenURL = e.iss, unavailablePosture{}, tokenURL
	e.cfg.DPoP = &dpop.Verifier{Replay: &memCache{held: map[string]time.Time{}}, Clock: clock}
	return m
}

// serve serves the endpoint with the support maps and underTest.
func (m *matrixEnv) serve(t *testing.T, underTest string) {
	t.Helper()
	eng, err := trustmaps.Compile(trustmaps.Document{Name: "maps.yaml", Data: []byte(underTest)})
	if err != nil {
		t.Fatalf("%v\n%s", err, underTest)
	}
	m.restart(t, func(c *exchange.Config) { c.Decider, c.ReplayAttributes = eng, eng.ReferencedAttributes })
}

// a path is one way to a token: how its map under test matches (the
// identity the maps decide for), and how to ask (first and, where it
// differs, again). ask returns the answer.
type path struct {
	name      string
	grantType string
	match     string // the map's match and grant, before the property's lines
	prepare   func(t *testing.T, m *matrixEnv) any
	ask       func(t *testing.T, m *matrixEnv, prepared any) result
	// again asks once more after the map was removed (nil: ask again).
	again func(t *testing.T, m *matrixEnv, prepared any, first result) result
}

const workloadMap = `id: under-test
match:
  provider: ci
  subject: "` + mainSub + `"
  conditions: [%s]
grant:
  client_id: payments-ci
  audiences: ["` + paymentsMCP + `", "` + ledgerMCP + `"]
  scopes: ["payments:read"]
  may_act: [{provider: ci, subject: "` + serverSub + `"}]
`

const personMap = `id: under-test
match:
  provider: corp
  subject: alice
  conditions: [%s]
grant:
  client_id_expr: request.client_id
  audiences: ["` + paymentsMCP + `"]
  scopes: ["payments:read"]
  authorization_servers: ["` + broker + `"]
`

func (m *matrixEnv) idToken(aud string) string {
	n := m.now.Unix()
	return m.corp.Sign(map[string]any{"iss": m.corp.URL, "sub": "alice", "aud": aud, "iat": n, "exp": n + 3600, "jti": authorize.Random(8)}, nil)
}

// code saves a code for alice at the desktop client, as the browser flow
// does after the maps granted it.
func (m *matrixEnv) code(t *testing.T) string {
	t.Helper()
	secret := authorize.Random(32)
	if err := m.st.SaveCode(context.Background(), authorize.Code{Hash: authorize.Hash(secret), ClientID: "desktop", RedirectURI: desktopCB,
		Challenge: pkceChallenge, Resource: paymentsMCP, Scopes: []string{"payments:read", exchange.ScopeOfflineAccess}, Provider: "corp",
		Subject: "alice", TTL: accessLife, Family: authorize.Random(8), ExpiresAt: m.now.Add(codeLife)}); err != nil {
		t.Fatal(err)
	}
	return secret
}

func codeForm(code string) url.Values {
	return url.Values{"grant_type": {exchange.GrantAuthorizationCode}, "code": {code}, "client_id": {"desktop"},
		"redirect_uri": {desktopCB}, "code_verifier": {pkceVerifier}}
}

var matrixPaths = []path{
	{name: "token exchange", grantType: exchange.GrantTokenExchange, match: workloadMap,
		ask: func(t *testing.T, m *matrixEnv, _ any) result {
			return m.post(t, exchangeForm(m.subjectToken(mainSub, nil)), nil)
		}},
	{name: "JWT bearer", grantType: exchange.GrantJWTBearer, match: workloadMap,
		ask: func(t *testing.T, m *matrixEnv, _ any) result {
			return m.post(t, url.Values{"grant_type": {exchange.GrantJWTBearer}, "assertion": {m.subjectToken(mainSub, nil)}, "resource": {paymentsMCP}}, nil)
		}},
	{name: "client credentials", grantType: exchange.GrantClientCreds, match: workloadMap,
		ask: func(t *testing.T, m *matrixEnv, _ any) result {
			return m.post(t, url.Values{"grant_type": {exchange.GrantClientCreds}, "client_assertion_type": {exchange.AssertionJWTBearer},
				"client_assertion": {m.subjectToken(mainSub, func(c map[string]any) { c["aud"] = broker + "/token" })}, "resource": {paymentsMCP}}, nil)
		}},
	{name: "delegation", grantType: exchange.GrantTokenExchange, match: workloadMap,
		ask: func(t *testing.T, m *matrixEnv, _ any) result {
			in, err := m.iss.Mint(context.Background(), issuer.Grant{Subject: "ci/" + mainSub, Audience: paymentsMCP, ClientID: "payments-ci", Scopes: []string{"payments:read"}})
			if err != nil {
				t.Fatal(err)
			}
			return m.post(t, delegationForm(in.Raw, m.subjectToken(serverSub, nil), ledgerMCP), nil)
		}},
	{name: "user-delegated", grantType: exchange.GrantTokenExchange, match: workloadMap,
		ask: func(t *testing.T, m *matrixEnv, _ any) result {
			return m.post(t, url.Values{"grant_type": {exchange.GrantTokenExchange}, "subject_token": {m.idToken(broker)}, "subject_token_type": {exchange.TokenTypeIDToken},
				"actor_token": {m.subjectToken(mainSub, nil)}, "actor_token_type": {exchange.TokenTypeJWT}, "resource": {paymentsMCP}}, nil)
		}},
	{name: "authorization code", grantType: exchange.GrantAuthorizationCode, match: personMap,
		ask: func(t *testing.T, m *matrixEnv, _ any) result { return m.post(t, codeForm(m.code(t)), nil) }},
	{name: "refresh", grantType: exchange.GrantRefreshToken, match: personMap,
		// The family begins under a map with no property.
		prepare: func(t *testing.T, m *matrixEnv) any {
			m.serve(t, fmt.Sprintf(personMap, ""))
			res := m.post(t, codeForm(m.code(t)), nil)
			if res.status != 200 {
				t.Fatalf("the family's first token: %d %s\n%s", res.status, res.raw, m.logs.String())
			}
			return res.body["refresh_token"].(string)
		},
		ask: func(t *testing.T, m *matrixEnv, p any) result { return m.post(t, refreshForm2(p.(string)), nil) },
		again: func(t *testing.T, m *matrixEnv, _ any, first result) result {
			return m.post(t, refreshForm2(first.body["refresh_token"].(string)), nil)
		}},
	{name: "ID-JAG from an IdP", grantType: exchange.GrantJWTBearer, match: personMap,
		ask: func(t *testing.T, m *matrixEnv, _ any) result {
			n := m.now.Unix()
			jag := m.corp.Sign(map[string]any{"iss": m.corp.URL, "sub": "alice", "aud": broker, "client_id": "desktop", "resource": paymentsMCP,
				"scope": "payments:read", "jti": authorize.Random(8), "iat": n, "exp": n + 300}, map[string]any{"typ": "oauth-id-jag+jwt"})
			return m.post(t, url.Values{"grant_type": {exchange.GrantJWTBearer}, "assertion": {jag}, "client_id": {"desktop"}}, nil)
		}},
	{name: "our own ID-JAG", grantType: exchange.GrantJWTBearer, match: personMap,
		// Issued under a map with no property, redeemed under the one
		// under test: the redemption decides again.
		prepare: func(t *testing.T, m *matrixEnv) any { return nil },
		ask: func(t *testing.T, m *matrixEnv, _ any) result {
			return m.post(t, url.Values{"grant_type": {exchange.GrantJWTBearer}, "assertion": {m.ownIDJAG(t)}, "client_id": {"desktop"}}, nil)
		}},
}

func refreshForm2(token string) url.Values {
	return url.Values{"grant_type": {exchange.GrantRefreshToken}, "refresh_token": {token}, "client_id": {"desktop"}}
}

// ownIDJAG gets an ID-JAG mcpsts issues for itself to the desktop client,
// under the maps served now.
func (m *matrixEnv) ownIDJAG(t *testing.T) string {
	t.Helper()
	res := m.post(t, url.Values{"grant_type": {exchange.GrantTokenExchange}, "requested_token_type": {exchange.TokenTypeIDJAG},
		"subject_token": {m.idToken("desktop")}, "subject_token_type": {exchange.TokenTypeIDToken}, "client_id": {"desktop"},
		"audience": {broker}, "resource": {paymentsMCP}}, nil)
	if res.status != 200 {
		return "not-issued:" + res.raw
	}
	return res.body["access_token"].(string)
}

// policyRefusal is each path's code for a refusal by the trust maps.
var policyRefusal = map[string]string{
	"token exchange": "invalid_request", "JWT bearer": "invalid_grant", "client credentials": "unauthorized_client",
	"delegation": "invalid_request", "user-delegated": "invalid_request", "authorization code": "invalid_grant",
	"refresh": "invalid_grant", "ID-JAG from an IdP": "invalid_grant", "our own ID-JAG": "invalid_grant",
}

func TestDecisionMatrix(t *testing.T) {
	// Every grant of the dispatch table has a path.
	for _, gt := range exchange.GrantTypes(newMatrixEnv(t).srv.Config.Handler) {
		if !slices.ContainsFunc(matrixPaths, func(p path) bool { return p.grantType == gt }) {
			t.Errorf("grant type %s has no path in the decision matrix", gt)
		}
	}
	for _, p := range matrixPaths {
		for _, prop := range matrixProperties {
			t.Run(p.name+"/"+prop.name, func(t *testing.T) {
				m := newMatrixEnv(t)
				under := fmt.Sprintf(p.match, prop.condition) + indent(prop.grant)
				var prepared any
				if p.prepare != nil {
					prepared = p.prepare(t, m)
				}
				if prop.removed {
					m.serve(t, under)
					first := p.ask(t, m, prepared)
					if first.status != 200 {
						t.Fatalf("the first token: %d %s", first.status, first.raw)
					}
					// The maps without it.
					m.serve(t, "id: other\nmatch: {provider: nobody, subject: x}\ngrant: {client_id: x, audiences: [\"https://x.example/mcp\"]}\n")
					again := p.again
					if again == nil {
						again = func(t *testing.T, m *matrixEnv, prepared any, _ result) result { return p.ask(t, m, prepared) }
					}
					res := again(t, m, prepared, first)
					if res.status != 400 || res.body["error"] != policyRefusal[p.name] {
						t.Fatalf("after the map's removal: %d %s, want 400 %s", res.status, res.raw, policyRefusal[p.name])
					}
					return
				}
				if p.name == "our own ID-JAG" {
					// Issued under the plain map, redeemed under this one.
					m.serve(t, fmt.Sprintf(p.match, ""))
					jag := m.ownIDJAG(t)
					m.serve(t, under)
					res := m.post(t, url.Values{"grant_type": {exchange.GrantJWTBearer}, "assertion": {jag}, "client_id": {"desktop"}}, nil)
					m.judge(t, p, prop, res)
					return
				}
				m.serve(t, under)
				m.judge(t, p, prop, p.ask(t, m, prepared))
			})
		}
	}
}

// judge compares an answer with the cell's expected outcome.
func (m *matrixEnv) judge(t *testing.T, p path, prop property, res result) {
	t.Helper()
	if prop.shape == nil {
		want := prop.refused
		if want == "" {
			want = policyRefusal[p.name]
		}
		if res.status != 400 || res.body["error"] != want {
			t.Fatalf("%d %s, want 400 %s", res.status, res.raw, want)
		}
		return
	}
	if res.status != 200 {
		t.Fatalf("%d %s, want a token", res.status, res.raw)
	}
	if got := prop.shape(verify(t, m.env, res.body["access_token"].(string))); got != prop.want {
		t.Fatalf("%s: %s, want %s", prop.name, got, prop.want)
	}
}

func indent(lines string) string {
	if lines == "" {
		return ""
	}
	return "  " + lines + "\n"
}

// TestPeopleOfTwoProvidersNeverShareASub (finding 4 of the decision
// review): the same subject at two identity providers gets tokens whose
// sub differ, each naming its provider.
func TestPeopleOfTwoProvidersNeverShareASub(t *testing.T) {
	m := newMatrixEnv(t)
	m.serve(t, `id: people
match: {provider: corp, subject: 00u1ceo}
grant: {client_id_expr: request.client_id, audiences: ["`+paymentsMCP+`"], scopes: ["payments:read"]}
---
id: partners
match: {provider: partner, subject: 00u1ceo}
grant: {client_id_expr: request.client_id, audiences: ["`+paymentsMCP+`"], scopes: ["payments:read"]}
`)
	subs := map[string]string{}
	for _, provider := range []string{"corp", "partner"} {
		if _, err := m.st.GrantConsent(context.Background(), consent.Consent{User: "00u1ceo", Provider: provider, ClientID: "desktop",
			Scopes: []string{"payments:read"}, Resources: []string{paymentsMCP}, ExpiresAt: m.now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		secret := authorize.Random(32)
		if err := m.st.SaveCode(context.Background(), authorize.Code{Hash: authorize.Hash(secret), ClientID: "desktop", RedirectURI: desktopCB,
			Challenge: pkceChallenge, Resource: paymentsMCP, Scopes: []string{"payments:read"}, Provider: provider, Subject: "00u1ceo",
			Family: authorize.Random(8), ExpiresAt: m.now.Add(codeLife)}); err != nil {
			t.Fatal(err)
		}
		res := m.post(t, codeForm(secret), nil)
		if res.status != 200 {
			t.Fatalf("%s: %d %s", provider, res.status, res.raw)
		}
		c := verify(t, m.env, res.body["access_token"].(string))
		subs[provider] = c["sub"].(string)
	}
	if subs["corp"] != "user:corp/00u1ceo" || subs["partner"] != "user:partner/00u1ceo" {
		t.Fatalf("subs %v", subs)
	}
}

// TestIntrospectionCallerIsAWorkload: a person's ID token never
// authenticates an introspection caller, even one the configuration
// names by that person's provider and subject.
func TestIntrospectionCallerIsAWorkload(t *testing.T) {
	m := newMatrixEnv(t)
	m.serve(t, fmt.Sprintf(workloadMap, ""))
	introspect, _ := exchange.NewLifecycleHandlers(m.cfg, exchange.LifecycleConfig{Revocations: m.st, SingleUse: m.st,
		Callers: []exchange.IntrospectionCaller{
			{Provider: "corp", Subject: "alice", Audiences: []string{paymentsMCP}},
			{Provider: "ci", Subject: serverSub, Audiences: []string{paymentsMCP}},
		}})
	srv := httptest.NewTLSServer(introspect)
	defer srv.Close()
	tok, err := m.iss.Mint(context.Background(), issuer.Grant{Subject: "ci/" + mainSub, Audience: paymentsMCP, ClientID: "payments-ci", Scopes: []string{"payments:read"}})
	if err != nil {
		t.Fatal(err)
	}
	as := func(assertion string) url.Values {
		return url.Values{"token": {tok.Raw}, "client_assertion_type": {exchange.AssertionJWTBearer}, "client_assertion": {assertion}}
	}
	if _, body := call(t, srv, as(m.subjectToken(serverSub, nil))); body["active"] != true {
		t.Fatalf("the workload caller: %v", body)
	}
	if status, body := call(t, srv, as(m.idToken(broker))); status != 401 || body["error"] != "invalid_client" {
		t.Fatalf("a person's ID token as the caller's credential: %d %v", status, body)
	}
}
