package exchange_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/mcpsts/mcpsts/exchange"
)

func TestClientCredentials(t *testing.T) {
	e := newEnv(t)
	form := func(assertion string) url.Values {
		return url.Values{
			"grant_type":            {"client_credentials"},
			"client_assertion_type": {exchange.AssertionJWTBearer},
			"client_assertion":      {assertion},
			"resource":              {"https://payments.example.com/mcp"},
		}
	}
	workload := func() string {
		return e.subjectToken(mainSub, func(c map[string]any) { c["aud"] = broker + "/token" })
	}
	res := e.post(t, form(workload()), nil)
	if res.status != 200 || res.body["scope"] != "payments:read" {
		t.Fatalf("client credentials: %d %v", res.status, res.body)
	}
	if c := verify(t, e, res.body["access_token"].(string)); c["client_id"] != "payments-ci" || c["aud"] != "https://payments.example.com/mcp" {
		t.Fatalf("claims %v", c)
	}
	withID := form(workload())
	withID.Set("client_id", "payments-ci")
	if res := e.post(t, withID, nil); res.status != 200 {
		t.Fatalf("with its own client_id: %d %v", res.status, res.body)
	}

	tests := []struct {
		name string
		form url.Values
		desc string
	}{
		{"another client_id", func() url.Values { f := form(workload()); f.Set("client_id", "someone-else"); return f }(), "client_id is not the client"},
		{"bad assertion", form("x.y.z"), "the credential was refused [check malformed_token]"},
		{"no assertion", func() url.Values { f := form(""); f.Del("client_assertion"); return f }(), "client_assertion_type must be"},
		{"no assertion at all", url.Values{"grant_type": {"client_credentials"}}, "needs client_assertion"},
		{"wrong assertion type", func() url.Values { f := form(workload()); f.Set("client_assertion_type", "urn:x"); return f }(), "client_assertion_type must be"},
		{"assertion for another service", form(e.subjectToken(mainSub, func(c map[string]any) { c["aud"] = "https://other.example" })), "the credential was refused [check wrong_audience]"},
		{"assertion with a token exchange", func() url.Values {
			f := exchangeForm(e.subjectToken(mainSub, nil))
			f.Set("client_assertion_type", exchange.AssertionJWTBearer)
			f.Set("client_assertion", workload())
			return f
		}(), "only used by the client_credentials grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.post(t, tt.form, nil)
			if res.status != 401 || res.body["error"] != "invalid_client" || !strings.Contains(res.body["error_description"].(string)+" [check "+e.check()+"]", tt.desc) {
				t.Fatalf("got %d %v, want 401 invalid_client %q", res.status, res.body, tt.desc)
			}
			if res.header.Get("WWW-Authenticate") != "" {
				t.Errorf("WWW-Authenticate sent without Basic: %q", res.header.Get("WWW-Authenticate"))
			}
		})
	}
	denied := form(e.subjectToken("repo:x/y:ref:z", func(c map[string]any) { c["aud"] = broker }))
	if res := e.post(t, denied, nil); res.status != 400 || res.body["error"] != "unauthorized_client" {
		t.Fatalf("no map for the client: %d %v", res.status, res.body)
	}
}
