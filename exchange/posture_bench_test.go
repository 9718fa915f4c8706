package exchange_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/attest/posture"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/trustmaps"
)

const postureMap = `
id: ci-payments
match:
  provider: ci
  subject: "repo:example-org/payments:ref:refs/heads/main"
  conditions: [%s]
grant:
  client_id: payments-ci
  audiences: ["https://payments.example.com/mcp"]
  scopes: ["payments:read"]
  default_scopes: ["payments:read"]
`

// BenchmarkPostureCost measures token exchanges of distinct subject tokens
// in-process, decided by a map with a condition on the identity and by the
// same map requiring a compliant host instead, the request carrying an EDR assertion
// (ES256, bound to the subject), alternately; it reports both times, their
// difference, and the time of one verification of the same assertion as
// the broker verifies a subject token (signature, header and claims),
// measured in the same loop. The figure: the difference is at most about
// one verification. Run with -cpu 1.
func BenchmarkPostureCost(b *testing.B) {
	e := newEnv(b)
	v, err := oidc.NewVerifier(oidc.Options{Now: e.clock}, oidc.ProviderConfig{Keys: e.prov, Audiences: []string{broker}})
	if err != nil {
		b.Fatal(err)
	}
	edr := federationtest.NewIssuer(b)
	edr.AddKey("ES256")
	keys, err := federation.NewProvider(federation.ProviderConfig{Name: "edr", Issuer: edr.URL, Discovery: true, Algorithms: []string{"ES256"}, Fetcher: edr.Fetcher()})
	if err != nil {
		b.Fatal(err)
	}
	if err := keys.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	set, err := posture.New(e.clock, []posture.AssertionConfig{{Name: "edr", Keys: keys, BindIdentity: "subject", BindProviders: []string{"ci"}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	handler := func(condition string) http.Handler {
		eng, err := trustmaps.Compile(trustmaps.Document{Name: "m.yaml", Data: []byte(strings.Replace(postureMap, "%s", condition, 1))})
		if err != nil {
			b.Fatal(err)
		}
		cfg := e.cfg
		cfg.Attestors = map[string]attest.Attestor{exchange.TokenTypeJWT: v}
		cfg.Tracer, cfg.Decider, cfg.Posture = nil, eng, set
		return exchange.NewHandler(cfg)
	}
	// The same decision with a condition of the same shape that reads no
	// posture, so that the difference is what reading the posture costs.
	plain := handler(`"identity.subject.startsWith('repo:') && size(identity.subject) >= 10"`)
	compliant := handler(`"context.edr.compliant == true && context.edr.score >= 70"`)
	n := e.now.Unix()
	assertion := edr.Sign(map[string]any{"iss": edr.URL, "sub": mainSub, "iat": n, "exp": n + 600, "compliant": true, "score": 90}, nil)
	one, err := oidc.New(e.clock, oidc.ProviderConfig{Keys: keys, NoAudience: true})
	if err != nil {
		b.Fatal(err)
	}
	verify := func() time.Duration {
		t0 := time.Now()
		if _, err := one.Attest(context.Background(), attest.Evidence{Token: []byte(assertion)}); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	const pool = 512
	tokens := make([]string, pool)
	for i := range tokens {
		tokens[i] = e.subjectToken(mainSub, nil)
	}
	serve := func(h http.Handler, body string) time.Duration { return timedServe(b, h, body, "") }
	var tPlain, tPosture, tVerify time.Duration
	i := 0
	for b.Loop() {
		f := exchangeForm(tokens[i%pool])
		tPlain += serve(plain, f.Encode())
		f.Set("posture_token", assertion)
		tPosture += serve(compliant, f.Encode())
		tVerify += verify()
		i++
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
	b.ReportMetric(per(tPlain), "plain-ns/op")
	b.ReportMetric(per(tPosture), "posture-ns/op")
	b.ReportMetric(per(tPosture-tPlain), "added-ns/op")
	b.ReportMetric(per(tVerify), "verify-ns/op")
	b.ReportMetric(float64(tPosture-tPlain)/float64(tVerify), "added/verify")
}

// TestPostureTokenBounds: more posture assertions than a request may carry,
// or one too large, is invalid_request before any is verified.
func TestPostureTokenBounds(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		tokens []string
		want   string
	}{
		{"nine", slices.Repeat([]string{"a.b.c"}, posture.MaxAssertions+1), "at most 8 posture_token parameters"},
		{"too large", []string{strings.Repeat("a", posture.MaxAssertionSize) + ".b.c"}, "a posture_token is larger than"},
	} {
		f := exchangeForm(e.subjectToken(mainSub, nil))
		f["posture_token"] = tc.tokens
		res := e.post(t, f, nil)
		if res.status != 400 || res.body["error"] != "invalid_request" || !strings.Contains(fmt.Sprint(res.body["error_description"]), tc.want) {
			t.Errorf("%s: %d %s", tc.name, res.status, res.raw)
		}
	}
	// Within the bounds, a client that sends assertions no source reads
	// gets its token as before.
	f := exchangeForm(e.subjectToken(mainSub, nil))
	f["posture_token"] = []string{"a.b.c", "d.e.f"}
	if res := e.post(t, f, nil); res.status != 200 {
		t.Fatalf("%d %s", res.status, res.raw)
	}
}
