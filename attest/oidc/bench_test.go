package oidc_test

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpsts/mcpsts/attest"
)

// BenchmarkVerify measures Attest with a warm key cache against a bare
// jwt.Parse of the same token with the same key, alternately in one loop,
// and reports their ratio (the budget is 1.15).
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			e := newEnv(b, nil)
			if alg == "ES256" {
				e.is.AddKey("ES256")
			}
			measureAgainstParse(b, e, e.is.Sign(e.fixtureLike(), nil))
		})
	}
}

// measureAgainstParse runs Attest on tok (once to warm the cache) and a
// bare jwt.Parse of it with the same key, alternately, and reports both
// and their ratio.
func measureAgainstParse(b *testing.B, e *env, tok string) {
	ev := attest.Evidence{Token: []byte(tok)}
	ctx := context.Background()
	if _, err := e.v.Attest(ctx, ev); err != nil {
		b.Fatal(err)
	}
	pub := e.is.PublicKey()
	keyFunc := func(*jwt.Token) (any, error) { return pub, nil }
	var ours, bare time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if _, err := e.v.Attest(ctx, ev); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := jwt.Parse(tok, keyFunc, jwt.WithTimeFunc(e.now)); err != nil {
			b.Fatal(err)
		}
		ours += t1.Sub(t0)
		bare += time.Since(t1)
	}
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "attest-ns/op")
	b.ReportMetric(float64(bare.Nanoseconds())/float64(b.N), "parse-ns/op")
	b.ReportMetric(float64(ours)/float64(bare), "attest/parse")
}

// fixtureLike is a claim set of the size of a CI platform's token.
func (e *env) fixtureLike() map[string]any {
	c := e.claims()
	for _, k := range []string{"repository", "repository_owner", "ref", "ref_type", "workflow_ref", "job_workflow_ref",
		"event_name", "runner_environment", "environment", "sha", "actor", "run_id"} {
		c[k] = "value-of-" + k
	}
	return c
}
