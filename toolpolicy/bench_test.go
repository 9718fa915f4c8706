package toolpolicy_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/toolpolicy"
)

// policyOf1000 is a server's policy of 1,000 rules over 100 tools, ten
// each; the call decided is the last tool's, decided by its last rule.
func policyOf1000(b *testing.B) *toolpolicy.Server {
	var doc strings.Builder
	doc.WriteString("server: https://bench.example/mcp\ntools_without_rules: deny\nrules:\n")
	for i := range 1000 {
		fmt.Fprintf(&doc, "  - {id: r%d, tools: [tool%d], when: ['args.amount == %d', 'caller.subject.startsWith(\"user:\")'], effect: allow}\n", i, i%100, i)
	}
	p, err := toolpolicy.Compile(toolpolicy.Document{Name: "bench.yaml", Data: []byte(doc.String())})
	if err != nil {
		b.Fatal(err)
	}
	return p.For("https://bench.example/mcp")
}

// BenchmarkDecide1000Rules: one decision under a policy of 1,000 rules
// (the ten of the called tool read, the last matching). Issue 33: p99 under
// 20 µs.
func BenchmarkDecide1000Rules(b *testing.B) {
	s := policyOf1000(b)
	call := toolpolicy.Call{Tool: "tool99", Args: map[string]any{"amount": int64(999)}, Caller: person, Time: time.Now()}
	ctx := context.Background()
	b.ReportAllocs()
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		d := s.Decide(ctx, call)
		took = append(took, time.Since(start))
		if d.Effect != "allow" || d.Rule != "r999" {
			b.Fatal(d)
		}
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkVisible200Tools: what tools/list shows of 200 tools (100 with
// rules that depend on the arguments, 100 no rule names). Issue 33: under
// 200 µs.
func BenchmarkVisible200Tools(b *testing.B) {
	s := policyOf1000(b)
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	tools := make([]string, 200)
	for i := range tools {
		tools[i] = fmt.Sprintf("tool%d", i)
	}
	for b.Loop() {
		n := 0
		show := s.Lister(ctx, person, now, "")
		for _, tool := range tools {
			if show(tool) {
				n++
			}
		}
		if n != 100 {
			b.Fatal(n)
		}
	}
}
