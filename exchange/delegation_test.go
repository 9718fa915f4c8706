package exchange_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/issuer/keystoretest"
)

const serverSub = "repo:example-org/payments-server:ref:refs/heads/main"

// incoming is the token the payments MCP server received from its caller.
func (e *env) incoming(t *testing.T) string {
	t.Helper()
	f := exchangeForm(e.subjectToken(mainSub, nil))
	f.Set("scope", "payments:read")
	res := e.post(t, f, nil)
	if res.status != 200 {
		t.Fatalf("incoming token: %d %v", res.status, res.body)
	}
	return res.body["access_token"].(string)
}

func delegationForm(subject, actor, resource string) url.Values {
	return url.Values{
		"grant_type":         {exchange.GrantTokenExchange},
		"subject_token":      {subject},
		"subject_token_type": {exchange.TokenTypeAccessToken},
		"actor_token":        {actor},
		"actor_token_type":   {exchange.TokenTypeJWT},
		"resource":           {resource},
	}
}

func TestDelegation(t *testing.T) {
	e := newEnv(t)
	in := e.incoming(t)
	inClaims := verify(t, e, in)

	res := e.post(t, delegationForm(in, e.subjectToken(serverSub, nil), "https://ledger.example.com/mcp"), nil)
	if res.status != 200 {
		t.Fatalf("delegation: %d %v", res.status, res.body)
	}
	c := verify(t, e, res.body["access_token"].(string))
	act, _ := c["act"].(map[string]any)
	if c["sub"] != inClaims["sub"] || c["aud"] != "https://ledger.example.com/mcp" || c["scope"] != "payments:read" ||
		act["sub"] != "workload:ci/"+serverSub || act["client_id"] != "payments-ci" || act["act"] != nil {
		t.Fatalf("delegated claims %v", c)
	}
	if c["exp"].(float64) > inClaims["exp"].(float64) {
		t.Fatalf("delegated token outlives the incoming one: %v > %v", c["exp"], inClaims["exp"])
	}
	if res.body["access_token"] == in {
		t.Fatal("the incoming token was passed through")
	}

	foreign := func() string {
		text, _ := issuer.GenerateKEK()
		kek, _ := issuer.ParseKEK(text)
		other, _ := issuer.New(issuer.Config{Issuer: broker, Store: keystoretest.NewMemory(), Local: &issuer.LocalKeys{KEK: kek, Algorithm: issuer.ES256}, Clock: e.clock})
		other.Start(context.Background())
		tok, _ := other.Mint(context.Background(), issuer.Grant{Subject: "ci/" + mainSub, Audience: "https://payments.example.com/mcp", ClientID: "payments-ci", Scopes: []string{"payments:read"}})
		return tok.Raw
	}()
	tests := []struct {
		name string
		form url.Values
		code string
		desc string
	}{
		{"no actor", func() url.Values {
			f := delegationForm(in, "", "https://ledger.example.com/mcp")
			f.Del("actor_token")
			f.Del("actor_token_type")
			return f
		}(), "invalid_request", "needs the acting service's own credential"},
		{"actor not named by may_act", delegationForm(in, e.subjectToken("repo:example-org/evil:ref:refs/heads/main", nil), "https://ledger.example.com/mcp"), "invalid_request", "may not act"},
		{"invalid actor token", delegationForm(in, "x.y.z", "https://ledger.example.com/mcp"), "invalid_request", "the credential was refused"},
		{"its own audience", delegationForm(in, e.subjectToken(serverSub, nil), "https://payments.example.com/mcp"), "invalid_target", "its own audience"},
		{"no downstream server", delegationForm(in, e.subjectToken(serverSub, nil), ""), "invalid_target", "needs the downstream server"},
		{"wider scope", func() url.Values {
			f := delegationForm(in, e.subjectToken(serverSub, nil), "https://ledger.example.com/mcp")
			f.Set("scope", "payments:read ledger:read")
			return f
		}(), "invalid_scope", "scope the incoming token lacks"},
		{"token of another issuer", delegationForm(foreign, e.subjectToken(serverSub, nil), "https://ledger.example.com/mcp"), "invalid_request", "not a valid access token of this broker"},
		{"a platform token as access_token", delegationForm(e.subjectToken(mainSub, nil), e.subjectToken(serverSub, nil), "https://ledger.example.com/mcp"), "invalid_request", "not a valid access token"},
		{"actor token with a platform subject", func() url.Values {
			f := exchangeForm(e.subjectToken(mainSub, nil))
			f.Set("actor_token", e.subjectToken(serverSub, nil))
			f.Set("actor_token_type", exchange.TokenTypeJWT)
			return f
		}(), "invalid_request", "an actor_token goes with"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.post(t, tt.form, nil)
			if res.status != 400 || res.body["error"] != tt.code || !strings.Contains(res.body["error_description"].(string), tt.desc) {
				t.Fatalf("got %d %v, want %s %q", res.status, res.body, tt.code, tt.desc)
			}
		})
	}

	t.Run("chain limit", func(t *testing.T) {
		delegated := res.body["access_token"].(string) // holds one actor
		e.restart(t, func(c *exchange.Config) { c.MaxChain = 1 })
		r := e.post(t, delegationForm(delegated, e.subjectToken(serverSub, nil), "https://payments.example.com/mcp"), nil)
		if r.status != 400 || !strings.Contains(r.body["error_description"].(string), "would exceed 1 actors") {
			t.Fatalf("over the chain limit: %d %v", r.status, r.body)
		}
	})
}
