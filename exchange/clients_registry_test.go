package exchange_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mcpsts/mcpsts/exchange"
)

type registry map[string]exchange.Client

func (r registry) Client(_ context.Context, id string) (exchange.Client, bool, error) {
	c, ok := r[id]
	return c, ok, nil
}

// TestRegisteredClients: a registered client gets tokens only with its
// grant types; an unregistered client ID from the trust maps works as
// before.
func TestRegisteredClients(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reg    registry
		status int
		code   string
	}{
		{"unregistered", registry{}, 200, ""},
		{"registered with token exchange", registry{"payments-ci": {ID: "payments-ci", GrantTypes: []string{exchange.GrantTokenExchange}}}, 200, ""},
		{"registered without it", registry{"payments-ci": {ID: "payments-ci", GrantTypes: []string{exchange.GrantClientCreds}}}, 400, "unauthorized_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.restart(t, func(c *exchange.Config) { c.Clients = tc.reg })
			res := e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), nil)
			if res.status != tc.status || (tc.code != "" && res.body["error"] != tc.code) {
				t.Fatalf("%d %v", res.status, res.body)
			}
		})
	}
}

func TestParseClient(t *testing.T) {
	c, err := exchange.ParseClient([]byte(`{"client_id":"agent","name":"Agent","grant_types":["client_credentials","authorization_code"],"redirect_uris":["https://app.example.com/cb","http://127.0.0.1:8765/cb"]}`))
	if err != nil || c.ID != "agent" || len(c.RedirectURIs) != 2 {
		t.Fatalf("%+v %v", c, err)
	}
	_, err = exchange.ParseClient([]byte(`{"grant_types":["password"],"redirect_uris":["http://evil.example/cb","https://app.example.com/*","https://a.example/cb#x","ftp://x"]}`))
	want := []string{"client_id: required", `grant_types[0]: "password" is not a grant type`, "redirect_uris[0]: \"http://evil.example/cb\" is plain http",
		"redirect_uris[1]: \"https://app.example.com/*\" has a wildcard", "redirect_uris[2]: \"https://a.example/cb#x\" has a fragment", "redirect_uris[3]: \"ftp://x\" is not https"}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("err = %v, want %q", err, w)
		}
	}
	if _, err := exchange.ParseClient([]byte(`{"client_id":"a","grant_types":["client_credentials"],"secret":"x"}`)); err == nil || !strings.Contains(err.Error(), `unknown field "secret"`) {
		t.Errorf("unknown field: %v", err)
	}
}
