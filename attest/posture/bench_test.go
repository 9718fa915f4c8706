package posture_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/attest/posture"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// BenchmarkEvaluate: a pushed assertion against one verification of the
// same token as the broker verifies a subject token; a pulled posture
// served from the cache.
func BenchmarkEvaluate(b *testing.B) {
	f := newFixture(b)
	keys := f.keys(b, f.edr)
	ctx := context.Background()
	now := func() time.Time { return f.now }
	tok := f.edr.Sign(map[string]any{"iss": f.edr.URL, "sub": workload.Subject, "iat": f.now.Unix(), "exp": f.now.Unix() + 600, "compliant": true, "score": 90}, nil)
	set, err := posture.New(now, []posture.AssertionConfig{{Name: "edr", Keys: keys, BindIdentity: "subject", BindProviders: []string{"gce"}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	one, err := oidc.New(now, oidc.ProviderConfig{Keys: keys, NoAudience: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("assertion", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if p := set.Evaluate(ctx, workload, []string{tok}, nil); p[0].Status != attest.PosturePresent {
				b.Fatal(p[0])
			}
		}
	})
	b.Run("verification", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := one.Attest(ctx, attest.Evidence{Token: []byte(tok)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	ps := newPullServer(b)
	pulled, err := posture.New(now, nil, []*posture.Pull{ps.pull(b, posture.PullConfig{CacheTTL: posture.MaxCacheTTL})})
	if err != nil {
		b.Fatal(err)
	}
	pulled.Evaluate(ctx, workload, nil, nil) // fills the cache
	b.Run("pull-cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if p := pulled.Evaluate(ctx, workload, nil, nil); p[0].Status != attest.PosturePresent {
				b.Fatal(p[0])
			}
		}
		if ps.calls.Load() != 1 {
			b.Fatalf("%d calls: not served from the cache", ps.calls.Load())
		}
	})
	// A whole decision: the same map reading the identity, then the cached
	// pulled posture; the difference is what the posture adds.
	decide := func(b *testing.B, condition string, withPosture bool) {
		e := engine(b, strings.Replace(mdmMap, "context.mdm.compliant == true && context.mdm.score > 80", condition, 1))
		b.ReportAllocs()
		for b.Loop() {
			req := trustmaps.Request{Audience: "https://mcp.example/tools"}
			if withPosture {
				req.Posture = pulled.Evaluate(ctx, workload, nil, e.ReadsContext)
			}
			if _, err := e.Decide(ctx, workload, req); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("decide-identity", func(b *testing.B) {
		decide(b, `identity.subject.startsWith("1043") && size(identity.subject) > 10`, false)
	})
	b.Run("decide-pulled", func(b *testing.B) {
		decide(b, `context.mdm.compliant == true && context.mdm.score > 80`, true)
	})
}
