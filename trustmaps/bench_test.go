package trustmaps_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// largePolicy is n maps over 100 providers: per provider, mostly exact
// subjects with a condition, plus a few subject patterns.
func largePolicy(n int) trustmaps.Document {
	var b strings.Builder
	for i := range n {
		provider := fmt.Sprintf("provider-%02d", i%100)
		subject := fmt.Sprintf(`subject: "system:serviceaccount:ns-%d:sa-%d"`, i, i)
		if i%50 == 0 {
			subject = fmt.Sprintf(`subject_pattern: "system:serviceaccount:team-%d:.*"`, i)
		}
		fmt.Fprintf(&b, `---
id: map-%05d
priority: %d
match:
  provider: %s
  %s
  conditions:
    - identity.attributes.namespace == "ns-%d"
    - request.time.within("Mon-Fri 07:00-19:00", "Europe/Berlin")
grant:
  client_id: client-%d
  audiences: ["https://mcp-%d.example.com/mcp"]
  scopes: ["read", "write"]
  default_scopes: ["read"]
`, i, i%7, provider, subject, i, i, i%10)
	}
	return trustmaps.Document{Name: "large.yaml", Data: []byte(b.String())}
}

// BenchmarkDecide10k decides against 10,000 maps over 100 providers and
// reports the median (p50) and p99 of single decisions.
func BenchmarkDecide10k(b *testing.B) {
	e, err := trustmaps.Compile(largePolicy(10_000))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ids := make([]attest.Identity, 1000)
	reqs := make([]trustmaps.Request, len(ids))
	for j := range ids {
		i := (j * 7919) % 10_000
		if i%50 == 0 {
			i++
		}
		ids[j] = attest.Identity{Kind: "oidc", Provider: fmt.Sprintf("provider-%02d", i%100),
			Subject: fmt.Sprintf("system:serviceaccount:ns-%d:sa-%d", i, i), Attributes: map[string]any{"namespace": fmt.Sprintf("ns-%d", i)}}
		reqs[j] = trustmaps.Request{Audience: fmt.Sprintf("https://mcp-%d.example.com/mcp", i%10), Time: monday}
	}
	samples := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	b.ResetTimer()
	j := 0
	for b.Loop() {
		t0 := time.Now()
		if _, err := e.Decide(ctx, ids[j], reqs[j]); err != nil {
			b.Fatal(err)
		}
		if len(samples) < cap(samples) {
			samples = append(samples, time.Since(t0))
		}
		j = (j + 1) % len(ids)
	}
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkCompile10k compiles 10,000 maps.
func BenchmarkCompile10k(b *testing.B) {
	doc := largePolicy(10_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := trustmaps.Compile(doc); err != nil {
			b.Fatal(err)
		}
	}
}
