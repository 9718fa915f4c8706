package exchange_test

import (
	"fmt"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mcpsts/mcpsts/exchange"
)

// TestAuditSpans: every request is a span with the mcpsts.* attributes of
// its decision; no token ever appears in a span.
func TestAuditSpans(t *testing.T) {
	e := newEnv(t)
	rec := tracetest.NewSpanRecorder()
	e.restart(t, func(c *exchange.Config) {
		c.Tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
	})
	const canary = "CANARY-b81f"
	good := e.subjectToken(mainSub, func(c map[string]any) { c["note"] = canary })
	res := e.post(t, exchangeForm(good), nil)
	if res.status != 200 {
		t.Fatal(res.raw)
	}
	bad := e.subjectToken(mainSub, func(c map[string]any) { c["note"] = canary; c["exp"] = 1 })
	e.post(t, exchangeForm(bad), nil)

	spans := rec.Ended()
	var names []string
	attrs := map[string]map[string]string{}
	for i, s := range spans {
		names = append(names, s.Name())
		m := map[string]string{}
		for _, kv := range s.Attributes() {
			m[string(kv.Key)] = kv.Value.Emit()
			for _, tok := range []string{good, bad, res.body["access_token"].(string), canary} {
				if strings.Contains(kv.Value.Emit(), tok) {
					t.Fatalf("span %s attribute %s holds a token or its content", s.Name(), kv.Key)
				}
			}
		}
		attrs[fmt.Sprint(i, s.Name())] = m
	}
	if fmt.Sprint(names) != "[token token]" {
		t.Fatalf("spans %v", names)
	}
	grant := attrs["0token"]
	for k, want := range map[string]string{
		"mcpsts.grant_type": exchange.GrantTokenExchange, "mcpsts.subject.provider": "ci", "mcpsts.subject.id": mainSub,
		"mcpsts.trust_map.id": "ci-payments", "mcpsts.client_id": "payments-ci", "mcpsts.granted.audience": "https://payments.example.com/mcp",
		"mcpsts.granted.scopes": "payments:read", "mcpsts.decision": "allow", "mcpsts.request.audience": "https://payments.example.com/mcp",
	} {
		if grant[k] != want {
			t.Errorf("grant span %s = %q, want %q", k, grant[k], want)
		}
	}
	if grant["mcpsts.token.jti"] == "" || grant["mcpsts.token.exp"] == "" {
		t.Errorf("grant span without jti/exp: %v", grant)
	}
	deny := attrs["1token"]
	if deny["mcpsts.decision"] != "deny" || deny["mcpsts.error"] != "invalid_request" || deny["mcpsts.deny.reason"] != "the credential was refused" || deny["mcpsts.deny.check"] != "token_expired" {
		t.Errorf("denial span %v", deny)
	}
	if spans[1].Status().Code.String() != "Error" {
		t.Errorf("denial span status %v", spans[1].Status())
	}
}
