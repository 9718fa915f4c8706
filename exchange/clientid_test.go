package exchange_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

// TestSentClientIDMustBeDecided: whatever the grant, a request that names
// a client_id gets a token only when the trust maps decide that client for
// its identity; another one is refused 401 invalid_client, with both IDs
// in the audit record. Absent, the decided client is issued as before.
func TestSentClientIDMustBeDecided(t *testing.T) {
	e := newEnv(t)
	corp, st := withUsers(t, e)
	if _, err := st.GrantConsent(context.Background(), consent.Consent{User: "alice", Provider: "corp", ClientID: "payments-ci", Scopes: []string{"payments:read"},
		Resources: []string{"https://payments.example.com/mcp"}, ExpiresAt: e.now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	n := e.now.Unix()
	grants := map[string]func() url.Values{
		"token exchange": func() url.Values { return exchangeForm(e.subjectToken(mainSub, nil)) },
		"JWT bearer": func() url.Values {
			return url.Values{"grant_type": {exchange.GrantJWTBearer}, "assertion": {e.subjectToken(mainSub, nil)}, "resource": {"https://payments.example.com/mcp"}}
		},
		"client credentials": func() url.Values {
			return url.Values{"grant_type": {exchange.GrantClientCreds}, "client_assertion_type": {exchange.AssertionJWTBearer},
				"client_assertion": {e.subjectToken(mainSub, nil)}, "resource": {"https://payments.example.com/mcp"}}
		},
		"delegation": func() url.Values {
			return delegationForm(e.incoming(t), e.subjectToken(serverSub, nil), "https://ledger.example.com/mcp")
		},
		"user-delegated token exchange": func() url.Values {
			return url.Values{
				"grant_type":    {exchange.GrantTokenExchange},
				"subject_token": {corp.Sign(map[string]any{"iss": corp.URL, "sub": "alice", "aud": broker, "iat": n, "exp": n + 3600}, nil)}, "subject_token_type": {exchange.TokenTypeIDToken},
				"actor_token": {e.subjectToken(mainSub, nil)}, "actor_token_type": {exchange.TokenTypeJWT}, "resource": {"https://payments.example.com/mcp"},
			}
		},
	}
	for grant, form := range grants {
		for _, tc := range []struct {
			name, clientID string
			wantStatus     int
		}{
			{"absent", "", 200},
			{"the decided client", "payments-ci", 200},
			{"another client", "ledger-admin", 401},
		} {
			t.Run(grant+"/"+tc.name, func(t *testing.T) {
				f := form()
				if tc.clientID != "" {
					f.Set("client_id", tc.clientID)
				}
				res := e.post(t, f, nil)
				if res.status != tc.wantStatus {
					t.Fatalf("%d %v, want %d", res.status, res.body, tc.wantStatus)
				}
				if tc.wantStatus == 200 {
					if c := verify(t, e, res.body["access_token"].(string)); c["client_id"] != "payments-ci" {
						t.Fatalf("client_id claim %v", c["client_id"])
					}
					return
				}
				if res.body["error"] != "invalid_client" || res.body["error_description"] != "client_id is not the client the trust maps decide for this identity" {
					t.Fatalf("answer %v", res.body)
				}
				attrs := map[string]string{}
				ended := e.rec.Ended()
				for _, kv := range ended[len(ended)-1].Attributes() {
					attrs[string(kv.Key)] = kv.Value.Emit()
				}
				if attrs["mcpsts.request.client_id"] != "ledger-admin" || attrs["mcpsts.client_id"] != "payments-ci" || attrs["mcpsts.deny.check"] != "client_id_mismatch" {
					t.Fatalf("audit attributes %v", attrs)
				}
			})
		}
	}
}
