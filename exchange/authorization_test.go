package exchange_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

// RFC 7636 Appendix B.
const pkceVerifier, pkceChallenge = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

const (
	desktop     = "mcp-desktop"
	desktopCB   = "http://127.0.0.1:8080/cb"
	mailServer  = "https://payments.example.com/mcp"
	codeFamily  = "family-1"
	codeLife    = time.Minute
	accessLife  = 10 * time.Minute
	mailScope   = "payments:read"
	userSubject = "alice"
)

// browserEnv is the token endpoint with the browser grants on, alice's
// consent for the desktop client, and a way to make codes as the
// authorization endpoint does.
type browserEnv struct {
	*env
	st      *store.Store
	consent consent.Consent
}

// peopleMaps grant people of corp, through the client they use, the
// payments server: redeeming a code and refreshing decide again with them.
const peopleMaps = `---
id: people
match: {provider: corp, subject_pattern: "[a-z]+"}
grant:
  client_id_expr: request.client_id
  audiences: ["https://payments.example.com/mcp"]
  scopes: ["payments:read", "payments:write"]
  max_ttl: 10m
`

func newBrowserEnv(t testing.TB) *browserEnv {
	e := newEnv(t)
	_, st := withUsers(t, e)
	eng, err := trustmaps.Compile(trustmaps.Document{Name: "maps.yaml", Data: []byte(maps + peopleMaps)})
	if err != nil {
		t.Fatal(err)
	}
	// Kept by every later restart.
	e.cfg.Decider, e.cfg.Consents, e.cfg.Authorizations, e.cfg.Revocations = eng, st, st, st
	e.restart(t, func(*exchange.Config) {})
	c, err := st.GrantConsent(context.Background(), consent.Consent{User: userSubject, Provider: "corp", ClientID: desktop,
		Scopes: []string{mailScope, exchange.ScopeOfflineAccess}, Resources: []string{mailServer}, ExpiresAt: e.now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return &browserEnv{env: e, st: st, consent: c}
}

// code saves an authorization code for alice and returns it.
func (b *browserEnv) code(t testing.TB, family string, mut func(*authorize.Code)) string {
	t.Helper()
	secret := authorize.Random(32)
	c := authorize.Code{Hash: authorize.Hash(secret), ClientID: desktop, RedirectURI: desktopCB, Challenge: pkceChallenge, Resource: mailServer,
		Scopes: []string{mailScope, exchange.ScopeOfflineAccess}, Provider: "corp", Subject: userSubject, TTL: accessLife, Family: family,
		ExpiresAt: b.now.Add(codeLife)}
	if mut != nil {
		mut(&c)
	}
	if err := b.st.SaveCode(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return secret
}

func redeem(code string) url.Values {
	return url.Values{"grant_type": {exchange.GrantAuthorizationCode}, "code": {code}, "client_id": {desktop},
		"redirect_uri": {desktopCB}, "code_verifier": {pkceVerifier}}
}

func refreshForm(token string) url.Values {
	return url.Values{"grant_type": {exchange.GrantRefreshToken}, "refresh_token": {token}, "client_id": {desktop}}
}

func (b *browserEnv) refused(t *testing.T, f url.Values, status int, code, desc string) {
	t.Helper()
	res := b.post(t, f, nil)
	if res.status != status || res.body["error"] != code || res.body["error_description"] != desc {
		t.Fatalf("got %d %v, want %d %s %q", res.status, res.body, status, code, desc)
	}
}

func TestAuthorizationCodeGrant(t *testing.T) {
	b := newBrowserEnv(t)
	code := b.code(t, codeFamily, nil)
	res := b.post(t, redeem(code), nil)
	if res.status != 200 || res.body["token_type"] != "Bearer" || res.body["scope"] != mailScope || res.body["refresh_token"] == nil || res.body["issued_token_type"] != nil {
		t.Fatalf("redeem: %d %v", res.status, res.body)
	}
	c := verify(t, b.env, res.body["access_token"].(string))
	if c["sub"] != "user:corp/"+userSubject || c["client_id"] != desktop || c["aud"] != mailServer || c["scope"] != mailScope || c["exp"].(float64)-c["iat"].(float64) != accessLife.Seconds() {
		t.Fatalf("claims %v", c)
	}
	refresh := res.body["refresh_token"].(string)

	// A second use of the code fails and revokes what the first gave:
	// its refresh family and (finding 6 of the decision review) its access
	// token.
	if revoked, err := b.st.Revoked(context.Background(), c["jti"].(string), "x", "x", b.now); err != nil || revoked {
		t.Fatalf("the access token revoked before the code's reuse: %v %v", revoked, err)
	}
	b.refused(t, redeem(code), 400, "invalid_grant", "the authorization code was already used; the tokens it gave are revoked")
	b.refused(t, refreshForm(refresh), 400, "invalid_grant", "the refresh token is not valid")
	if revoked, err := b.st.Revoked(context.Background(), c["jti"].(string), "x", "x", b.now); err != nil || !revoked {
		t.Fatalf("the first redemption's access token is not revoked after the code's reuse: %v %v", revoked, err)
	}

	for _, tc := range []struct {
		name string
		mut  func(*authorize.Code)
		form func(url.Values)
		code string
		desc string
	}{
		{"unknown code", nil, func(f url.Values) { f.Set("code", "nope") }, "invalid_grant", "the authorization code is not valid"},
		{"expired code", func(c *authorize.Code) { c.ExpiresAt = b.now }, nil, "invalid_grant", "the authorization code has expired"},
		{"another client", nil, func(f url.Values) { f.Set("client_id", "other-client") }, "invalid_grant", "the authorization code was issued to another client"},
		{"redirect URI with a trailing slash", nil, func(f url.Values) { f.Set("redirect_uri", desktopCB+"/") }, "invalid_grant", "redirect_uri is not the one of the authorization request"},
		{"redirect URI on another port", nil, func(f url.Values) { f.Set("redirect_uri", "http://127.0.0.1:9090/cb") }, "invalid_grant", "redirect_uri is not the one of the authorization request"},
		{"wrong verifier", nil, func(f url.Values) { f.Set("code_verifier", strings.Repeat("a", 43)) }, "invalid_grant", authorize.ErrPKCEMismatch.Error()},
		{"no verifier", nil, func(f url.Values) { f.Del("code_verifier") }, "invalid_grant", authorize.ErrPKCEVerifier.Error()},
		{"a verifier for a code without PKCE (downgrade)", func(c *authorize.Code) { c.Challenge = "" }, nil, "invalid_grant", authorize.ErrPKCEMismatch.Error()},
		{"another resource", nil, func(f url.Values) { f.Set("resource", "https://ledger.example.com/mcp") }, "invalid_target", "the grant is for another resource"},
		{"no client_id", nil, func(f url.Values) { f.Del("client_id") }, "invalid_request", "client_id is required"},
		{"no redirect_uri", nil, func(f url.Values) { f.Del("redirect_uri") }, "invalid_request", "redirect_uri is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := redeem(b.code(t, "family-"+tc.name, tc.mut))
			if tc.form != nil {
				tc.form(f)
			}
			b.refused(t, f, 400, tc.code, tc.desc)
		})
	}

	// Without the consent, no tokens, and no refresh token survives.
	noConsent := b.code(t, "family-consent", func(c *authorize.Code) { c.ClientID = "unconsented" })
	f := redeem(noConsent)
	f.Set("client_id", "unconsented")
	b.refused(t, f, 400, "invalid_grant", "the user's consent for this client no longer covers this grant")

	// Without offline_access, no refresh token.
	online := b.post(t, redeem(b.code(t, "family-online", func(c *authorize.Code) { c.Scopes = []string{mailScope} })), nil)
	if online.status != 200 || online.body["refresh_token"] != nil || online.body["scope"] != nil {
		t.Fatalf("without offline_access: %d %v", online.status, online.body)
	}
}

func TestRefreshTokenGrant(t *testing.T) {
	b := newBrowserEnv(t)
	first := b.post(t, redeem(b.code(t, codeFamily, nil)), nil)
	if first.status != 200 {
		t.Fatal(first.raw)
	}
	r1 := first.body["refresh_token"].(string)
	second := b.post(t, refreshForm(r1), nil)
	r2, _ := second.body["refresh_token"].(string)
	if second.status != 200 || r2 == "" || r2 == r1 {
		t.Fatalf("refresh: %d %v", second.status, second.body)
	}
	if c := verify(t, b.env, second.body["access_token"].(string)); c["sub"] != "user:corp/"+userSubject || c["client_id"] != desktop || c["scope"] != mailScope {
		t.Fatalf("refreshed claims %v", c)
	}
	// The rotated token used again: refused, and its successor with it.
	b.refused(t, refreshForm(r1), 400, "invalid_grant", "the refresh token was already used; its grant is revoked")
	b.refused(t, refreshForm(r2), 400, "invalid_grant", "the refresh token is not valid")

	fresh := func() string {
		res := b.post(t, redeem(b.code(t, "family-"+authorize.Random(4), nil)), nil)
		if res.status != 200 {
			t.Fatal(res.raw)
		}
		return res.body["refresh_token"].(string)
	}
	// Another client presenting it: refused, and the family is gone.
	stolen := fresh()
	f := refreshForm(stolen)
	f.Set("client_id", "other-client")
	b.refused(t, f, 400, "invalid_grant", "the refresh token was issued to another client")
	b.refused(t, refreshForm(stolen), 400, "invalid_grant", "the refresh token is not valid") // the family, this token too, is revoked

	// A refresh names only its grant's resource (RFC 8707 §2.2); another
	// one is refused and the family goes.
	other := fresh()
	f = refreshForm(other)
	f.Set("resource", "https://ledger.example.com/mcp")
	b.refused(t, f, 400, "invalid_target", "the grant is for another resource")
	b.refused(t, refreshForm(other), 400, "invalid_grant", "the refresh token is not valid")
	same := refreshForm(fresh())
	same.Set("resource", mailServer)
	if res := b.post(t, same, nil); res.status != 200 {
		t.Fatalf("a refresh naming its own resource: %d %s", res.status, res.raw)
	}

	// Scopes never widen.
	f = refreshForm(fresh())
	f.Set("scope", mailScope+" payments:write")
	b.refused(t, f, 400, "invalid_scope", "a refresh never widens the grant's scopes")

	// A revoked consent takes its refresh tokens with it.
	r := fresh()
	if err := b.st.RevokeConsent(context.Background(), b.consent.ID); err != nil {
		t.Fatal(err)
	}
	b.refused(t, refreshForm(r), 400, "invalid_grant", "the refresh token is not valid")

	// An expired consent ends the grant at its next refresh.
	if _, err := b.st.GrantConsent(context.Background(), consent.Consent{User: userSubject, Provider: "corp", ClientID: desktop,
		Scopes: []string{mailScope, exchange.ScopeOfflineAccess}, Resources: []string{mailServer}, ExpiresAt: b.now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r = fresh()
	b.setNow(b.now.Add(2 * time.Hour))
	b.refused(t, refreshForm(r), 400, "invalid_grant", "the user's consent for this client no longer covers this grant")
}

// TestBrowserGrantsOff: without the store of codes and refresh tokens the
// two grants are not offered.
func TestBrowserGrantsOff(t *testing.T) {
	e := newEnv(t)
	res := e.post(t, redeem("x"), nil)
	if res.status != 400 || res.body["error"] != "unsupported_grant_type" || strings.Contains(res.body["error_description"].(string), "authorization_code") {
		t.Fatalf("%d %v", res.status, res.body)
	}
}

// TestRefreshLifetimes: time passes on the endpoint's clock. A refresh
// token is good until its sliding expiry (refresh_ttl) and not a second
// past it; a family ends at its absolute lifetime (refresh_max_lifetime)
// however often it rotated.
func TestRefreshLifetimes(t *testing.T) {
	b := newBrowserEnv(t)
	b.cfg.RefreshTTL, b.cfg.RefreshMaxLifetime = time.Hour, 90*time.Minute
	b.restart(t, func(*exchange.Config) {})
	start := b.now
	// The clock moves; the issuer reloads its keys as its Run would.
	at := func(t time.Time) {
		b.setNow(t)
		if err := b.iss.Refresh(context.Background()); err != nil {
			panic(err)
		}
	}
	first := b.post(t, redeem(b.code(t, "fam-life", nil)), nil)
	if first.status != 200 {
		t.Fatal(first.raw)
	}
	// Sliding: 59 minutes later it refreshes; its successor, left 61
	// minutes, has expired.
	at(start.Add(59 * time.Minute))
	second := b.post(t, refreshForm(first.body["refresh_token"].(string)), nil)
	if second.status != 200 {
		t.Fatalf("59 minutes in: %d %s", second.status, second.raw)
	}
	at(b.now.Add(61 * time.Minute))
	b.refused(t, refreshForm(second.body["refresh_token"].(string)), 400, "invalid_grant", "the refresh token has expired")

	// Absolute: rotated every 40 minutes, the family still ends 90 minutes
	// after its code was redeemed.
	at(start)
	res := b.post(t, redeem(b.code(t, "fam-abs", nil)), nil)
	for _, in := range []time.Duration{40 * time.Minute, 80 * time.Minute} {
		at(start.Add(in))
		res = b.post(t, refreshForm(res.body["refresh_token"].(string)), nil)
		if res.status != 200 {
			t.Fatalf("%s in: %d %s", in, res.status, res.raw)
		}
	}
	at(start.Add(90*time.Minute + time.Second))
	b.refused(t, refreshForm(res.body["refresh_token"].(string)), 400, "invalid_grant", "the refresh token has expired")
}
