package exchange_test

import (
	"context"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

// withUsers adds a user provider (the corporate IdP) and a consent store.
func withUsers(t testing.TB, e *env) (*federationtest.Issuer, *store.Store) {
	t.Helper()
	corp := federationtest.NewIssuer(t)
	clock := e.clock
	provider := func(name string, is *federationtest.Issuer) *federation.Provider {
		p, err := federation.NewProvider(federation.ProviderConfig{Name: name, Issuer: is.URL, Discovery: true, Fetcher: is.Fetcher(), Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	v, err := oidc.New(clock,
		oidc.ProviderConfig{Keys: provider("ci", e.idp), Audiences: []string{broker}},
		oidc.ProviderConfig{Keys: provider("corp", corp), Audiences: []string{broker}, Users: true},
	)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "s.db"), store.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.restart(t, func(c *exchange.Config) {
		c.Attestors = map[string]attest.Attestor{exchange.TokenTypeJWT: v, exchange.TokenTypeIDToken: v, exchange.GrantJWTBearer: v}
		c.Consents = st
	})
	return corp, st
}

func TestUserDelegatedExchange(t *testing.T) {
	e := newEnv(t)
	corp, st := withUsers(t, e)
	n := e.now.Unix()
	userToken := func() string {
		return corp.Sign(map[string]any{"iss": corp.URL, "sub": "alice", "aud": broker, "iat": n, "exp": n + 3600}, nil)
	}
	form := func(scope string) url.Values {
		f := url.Values{
			"grant_type": {exchange.GrantTokenExchange}, "subject_token": {userToken()}, "subject_token_type": {exchange.TokenTypeIDToken},
			"actor_token": {e.subjectToken(mainSub, nil)}, "actor_token_type": {exchange.TokenTypeJWT},
			"resource": {"https://payments.example.com/mcp"},
		}
		if scope != "" {
			f.Set("scope", scope)
		}
		return f
	}
	refused := func(name string, f url.Values, code, desc string) {
		t.Helper()
		res := e.post(t, f, nil)
		if res.status != 400 || res.body["error"] != code || !strings.Contains(res.body["error_description"].(string), desc) {
			t.Fatalf("%s: %d %v, want %s %q", name, res.status, res.body, code, desc)
		}
	}

	alone := form("")
	alone.Del("actor_token")
	alone.Del("actor_token_type")
	refused("user token alone", alone, "invalid_request", "a login never implies consent")
	refused("no consent", form(""), "invalid_grant", `the user has not consented to client "payments-ci"`)

	ctx := context.Background()
	st.GrantConsent(ctx, consent.Consent{User: "alice", Provider: "corp", ClientID: "other-client", Scopes: []string{"payments:read"},
		Resources: []string{"https://payments.example.com/mcp"}, ExpiresAt: e.now.Add(time.Hour)})
	refused("consent for another client", form(""), "invalid_grant", "has not consented")

	c, err := st.GrantConsent(ctx, consent.Consent{User: "alice", Provider: "corp", ClientID: "payments-ci", Scopes: []string{"payments:read"},
		Resources: []string{"https://payments.example.com/mcp"}, ExpiresAt: e.now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	res := e.post(t, form(""), nil)
	if res.status != 200 {
		t.Fatalf("with consent: %d %v", res.status, res.body)
	}
	claims := verify(t, e, res.body["access_token"].(string))
	act, _ := claims["act"].(map[string]any)
	if claims["sub"] != "user:corp/alice" || claims["client_id"] != "payments-ci" || act["sub"] != "workload:ci/"+mainSub || claims["scope"] != "payments:read" {
		t.Fatalf("claims %v", claims)
	}
	refused("scope beyond the consent", form("payments:write"), "invalid_grant", "has not consented")

	userAsActor := form("")
	userAsActor.Set("actor_token", userToken())
	refused("a user as actor", userAsActor, "invalid_request", "the actor must be a workload")
	refused("a user's assertion", url.Values{"grant_type": {exchange.GrantJWTBearer}, "assertion": {userToken()}}, "invalid_grant", "a user's assertion")
	// A user's token, consented or not, is never a client's credential.
	res = e.post(t, url.Values{"grant_type": {exchange.GrantClientCreds}, "client_assertion_type": {exchange.AssertionJWTBearer},
		"client_assertion": {userToken()}, "resource": {"https://payments.example.com/mcp"}}, nil)
	if res.status != 401 || res.body["error"] != "invalid_client" || res.body["error_description"] != "a user's token is not a client credential" {
		t.Fatalf("a user's token as client_assertion: %d %v", res.status, res.body)
	}

	if err := st.RevokeConsent(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	refused("after revocation", form(""), "invalid_grant", "has not consented")
}
