package exchange_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
)

const (
	paymentsServer = "repo:example-org/payments-server:ref:refs/heads/main"
	paymentsMCP    = "https://payments.example.com/mcp"
	singleSub      = "repo:example-org/once:ref:refs/heads/main"
)

// lifecycleEnv is the token endpoint with introspection and revocation
// beside it, over a real store.
type lifecycleEnv struct {
	*env
	st                  *store.Store
	introspect, revoker *httptest.Server
}

func newLifecycleEnv(t testing.TB) *lifecycleEnv {
	e := newEnv(t)
	st, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "s.db"), store.WithClock(e.clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	eng, err := trustmaps.Compile(trustmaps.Document{Name: "maps.yaml", Data: []byte(maps + `---
id: once
match: {provider: ci, subject: "` + singleSub + `"}
grant: {client_id: once-ci, audiences: ["` + paymentsMCP + `"], single_use: true}
`)})
	if err != nil {
		t.Fatal(err)
	}
	// The token endpoint (delegation) reads the same revocation list and
	// claims single use in the same store.
	e.restart(t, func(c *exchange.Config) { c.Decider, c.Revocations, c.Replay = eng, st, st })
	cfg := e.cfg
	cfg.Decider, cfg.Revocations, cfg.Replay = eng, st, st
	lc := exchange.LifecycleConfig{
		Callers:       []exchange.IntrospectionCaller{{Provider: "ci", Subject: paymentsServer, Audiences: []string{paymentsMCP}}},
		AdminAudience: broker + "/admin", AdminScope: "mcpsts:admin",
		Revocations: st, SingleUse: st,
	}
	l := &lifecycleEnv{env: e, st: st}
	introspect, revoke := exchange.NewLifecycleHandlers(cfg, lc)
	l.introspect, l.revoker = httptest.NewTLSServer(introspect), httptest.NewTLSServer(revoke)
	t.Cleanup(l.introspect.Close)
	t.Cleanup(l.revoker.Close)
	return l
}

// accessToken gets a token for sub at the payments server.
func (l *lifecycleEnv) accessToken(t *testing.T, sub string) string {
	t.Helper()
	res := l.post(t, exchangeForm(l.subjectToken(sub, nil)), nil)
	if res.status != 200 {
		t.Fatalf("token for %s: %d %s", sub, res.status, res.raw)
	}
	return res.body["access_token"].(string)
}

func (l *lifecycleEnv) assertion(sub string) url.Values {
	return url.Values{"client_assertion_type": {exchange.AssertionJWTBearer}, "client_assertion": {l.subjectToken(sub, nil)}}
}

func call(t *testing.T, srv *httptest.Server, form url.Values, header ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func with(v url.Values, k, val string) url.Values {
	v.Set(k, val)
	return v
}

// TestIntrospection: authorized callers only; active and the claims for a
// live token of the caller's audience; {"active": false} for everything
// else.
func TestIntrospection(t *testing.T) {
	l := newLifecycleEnv(t)
	tok := l.accessToken(t, mainSub)
	admin, err := l.iss.Mint(context.Background(), issuer.Grant{Subject: "corp/ops", SubjectType: issuer.User, Audience: broker + "/admin", ClientID: "ops-cli", Scopes: []string{"mcpsts:admin"}})
	if err != nil {
		t.Fatal(err)
	}
	ledger := l.post(t, with(exchangeForm(l.subjectToken(mainSub, nil)), "resource", "https://ledger.example.com/mcp"), nil).body["access_token"].(string)

	if status, body := call(t, l.introspect, url.Values{"token": {tok}}); status != 401 || body["error"] != "invalid_client" {
		t.Fatalf("unauthenticated: %d %v", status, body)
	}
	if status, body := call(t, l.introspect, with(l.assertion(mainSub), "token", tok)); status != 401 || body["error"] != "invalid_client" {
		t.Fatalf("a workload that is no introspection caller: %d %v", status, body)
	}
	status, body := call(t, l.introspect, with(l.assertion(paymentsServer), "token", tok))
	if status != 200 || body["active"] != true || body["aud"] != paymentsMCP || body["client_id"] != "payments-ci" || body["scope"] != "payments:read" ||
		body["sub"] != "workload:ci/"+mainSub || body["token_type"] != "Bearer" || body["iss"] != broker || body["exp"] == nil || body["iat"] == nil || body["jti"] == nil {
		t.Fatalf("introspection: %d %v", status, body)
	}
	for _, tc := range []struct{ name, token string }{
		{"another audience's token", ledger},
		{"a foreign token", l.subjectToken(mainSub, nil)},
		{"not a token", "x.y.z"},
		{"an unknown opaque token", "opaque-token"},
	} {
		status, body := call(t, l.introspect, with(l.assertion(paymentsServer), "token", tc.token))
		if status != 200 || len(body) != 1 || body["active"] != false {
			t.Errorf("%s: %d %v, want only active false", tc.name, status, body)
		}
	}
	if status, body := call(t, l.introspect, url.Values{"token": {ledger}}, "Authorization", "Bearer "+admin.Raw); status != 200 || body["active"] != true {
		t.Fatalf("an administrator introspects any audience: %d %v", status, body)
	}
	// A token with the admin scope for another audience is no admin token.
	elsewhere, err := l.iss.Mint(context.Background(), issuer.Grant{Subject: "corp/ops", SubjectType: issuer.User, Audience: paymentsMCP, ClientID: "ops-cli", Scopes: []string{"mcpsts:admin"}})
	if err != nil {
		t.Fatal(err)
	}
	if status, body := call(t, l.introspect, url.Values{"token": {ledger}}, "Authorization", "Bearer "+elsewhere.Raw); status != 401 || body["error"] != "invalid_client" {
		t.Fatalf("an admin-scoped token of another audience: %d %v", status, body)
	}
	// Time passes: active until its exp (within the 30 s leeway), inactive
	// once past it.
	exp := time.Unix(int64(mustFloat(t, call2(t, l, tok)["exp"])), 0)
	l.setNow(exp.Add(29 * time.Second))
	if _, body := call(t, l.introspect, with(l.assertion(paymentsServer), "token", tok)); body["active"] != true {
		t.Fatalf("29 s past exp (within the leeway): %v", body)
	}
	l.setNow(exp.Add(31 * time.Second))
	if _, body := call(t, l.introspect, with(l.assertion(paymentsServer), "token", tok)); body["active"] != false || len(body) != 1 {
		t.Fatalf("31 s past exp: %v, want only active false", body)
	}
}

// call2 introspects tok as the payments server and returns the answer.
func call2(t *testing.T, l *lifecycleEnv, tok string) map[string]any {
	t.Helper()
	_, body := call(t, l.introspect, with(l.assertion(paymentsServer), "token", tok))
	return body
}

func mustFloat(t *testing.T, v any) float64 {
	t.Helper()
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("%v is not a number", v)
	}
	return f
}

// TestRevocation: the token's own client revokes it, another is refused;
// a revoked token is inactive; an unknown token is 200.
func TestRevocation(t *testing.T) {
	l := newLifecycleEnv(t)
	tok := l.accessToken(t, mainSub)
	if status, body := call(t, l.revoker, with(l.assertion("repo:example-org/bound:ref:refs/heads/main"), "token", tok)); status != 400 || body["error"] != "unauthorized_client" {
		t.Fatalf("revocation by another workload: %d %v", status, body)
	}
	if status, body := call(t, l.revoker, url.Values{"token": {tok}, "client_id": {"other-client"}}); status != 400 || body["error"] != "unauthorized_client" {
		t.Fatalf("revocation by another public client: %d %v", status, body)
	}
	if status, body := call(t, l.revoker, url.Values{"token": {tok}}); status != 401 || body["error"] != "invalid_client" {
		t.Fatalf("unauthenticated revocation: %d %v", status, body)
	}
	if _, body := call(t, l.introspect, with(l.assertion(paymentsServer), "token", tok)); body["active"] != true {
		t.Fatalf("before revocation: %v", body)
	}
	if status, body := call(t, l.revoker, with(with(l.assertion(mainSub), "token", tok), "token_type_hint", "refresh_token")); status != 200 {
		t.Fatalf("revocation by the token's workload (a wrong hint): %d %v", status, body)
	}
	if _, body := call(t, l.introspect, with(l.assertion(paymentsServer), "token", tok)); body["active"] != false {
		t.Fatalf("after revocation: %v", body)
	}
	if status, _ := call(t, l.revoker, with(l.assertion(mainSub), "token", "unknown")); status != 200 {
		t.Fatalf("an unknown token: %d", status)
	}
	// Revoking a subject revokes its tokens issued until then.
	tok2 := l.accessToken(t, mainSub)
	if err := l.st.Revoke(context.Background(), exchange.RevokeSubject, "workload:ci/"+mainSub, l.now, l.now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, body := call(t, l.introspect, with(l.assertion(paymentsServer), "token", tok2)); body["active"] != false {
		t.Fatalf("a revoked subject's token: %v", body)
	}
}

// TestSingleUse: a single-use token is active at its first introspection
// only, also when 20 goroutines introspect it at once.
func TestSingleUse(t *testing.T) {
	l := newLifecycleEnv(t)
	tok := l.accessToken(t, singleSub)
	var active, inactive atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", l.introspect.URL, strings.NewReader(with(l.assertion(paymentsServer), "token", tok).Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := l.introspect.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var body map[string]any
			json.NewDecoder(resp.Body).Decode(&body)
			switch {
			case resp.StatusCode == 200 && body["active"] == true:
				if body["single_use"] != true {
					t.Errorf("no single_use in %v", body)
				}
				active.Add(1)
			case resp.StatusCode == 200 && body["active"] == false:
				inactive.Add(1)
			default:
				t.Errorf("%d %v", resp.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	if active.Load() != 1 || inactive.Load() != 19 {
		t.Fatalf("%d of 20 introspections active and %d inactive, want 1 and 19", active.Load(), inactive.Load())
	}
}

// TestRevokeRefreshToken: a public client revokes its refresh token's
// family; another client cannot.
func TestRevokeRefreshToken(t *testing.T) {
	b := newBrowserEnv(t)
	res := b.post(t, redeem(b.code(t, "fam-rev", nil)), nil)
	refresh := res.body["refresh_token"].(string)
	cfg := b.cfg
	cfg.Consents, cfg.Authorizations = b.st, b.st
	_, revoke := exchange.NewLifecycleHandlers(cfg, exchange.LifecycleConfig{Revocations: b.st})
	srv := httptest.NewTLSServer(revoke)
	defer srv.Close()
	if status, body := call(t, srv, url.Values{"token": {refresh}, "client_id": {"another-app"}}); status != 400 || body["error"] != "unauthorized_client" {
		t.Fatalf("another client: %d %v", status, body)
	}
	if status, _ := call(t, srv, url.Values{"token": {refresh}, "client_id": {desktop}, "token_type_hint": {"refresh_token"}}); status != 200 {
		t.Fatalf("revocation: %d", status)
	}
	b.refused(t, refreshForm(refresh), 400, "invalid_grant", "the refresh token is not valid")
}

// TestIntrospectRefreshTokens: a refresh token is active to a caller of
// its own resource until it expires, and inactive (and nothing more) to a
// caller of another resource, or once expired.
func TestIntrospectRefreshTokens(t *testing.T) {
	b := newBrowserEnv(t)
	b.cfg.RefreshTTL = time.Hour
	b.restart(t, func(*exchange.Config) {})
	res := b.post(t, redeem(b.code(t, "fam-intro", nil)), nil)
	refresh := res.body["refresh_token"].(string)
	introspect, _ := exchange.NewLifecycleHandlers(b.cfg, exchange.LifecycleConfig{Revocations: b.st, SingleUse: b.st,
		Callers: []exchange.IntrospectionCaller{
			{Provider: "ci", Subject: paymentsServer, Audiences: []string{mailServer}},
			{Provider: "ci", Subject: "repo:example-org/ledger-server:ref:refs/heads/main", Audiences: []string{"https://ledger.example.com/mcp"}},
		}})
	srv := httptest.NewTLSServer(introspect)
	defer srv.Close()
	as := func(sub string) url.Values {
		return url.Values{"token": {refresh}, "client_assertion_type": {exchange.AssertionJWTBearer}, "client_assertion": {b.subjectToken(sub, nil)}}
	}
	if _, body := call(t, srv, as(paymentsServer)); body["active"] != true || body["token_type"] != "refresh_token" || body["aud"] != mailServer {
		t.Fatalf("its own resource's server: %v", body)
	}
	if _, body := call(t, srv, as("repo:example-org/ledger-server:ref:refs/heads/main")); body["active"] != false || len(body) != 1 {
		t.Fatalf("another resource's server: %v, want only active false", body)
	}
	b.setNow(b.now.Add(61 * time.Minute)) // past the refresh token's hour
	if _, body := call(t, srv, as(paymentsServer)); body["active"] != false || len(body) != 1 {
		t.Fatalf("expired: %v, want only active false", body)
	}
}
