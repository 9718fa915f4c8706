package exchange_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/exchange"
)

func TestRateLimits(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  func(*exchange.Config)
		what string
	}{
		{"per identity", func(c *exchange.Config) { c.PerIdentity = exchange.RateLimit{Rate: 0.5, Burst: 2} }, "identity"},
		{"per client", func(c *exchange.Config) { c.PerClient = exchange.RateLimit{Rate: 0.5, Burst: 2} }, "client"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.restart(t, tt.cfg)
			send := func() result {
				f := exchangeForm(e.subjectToken(mainSub, nil))
				return e.post(t, f, nil)
			}
			for i := range 2 {
				if r := send(); r.status != 200 {
					t.Fatalf("request %d within the burst: %d %v", i, r.status, r.body)
				}
			}
			r := send()
			if r.status != 429 || r.body["error"] != "slow_down" || r.header.Get("Retry-After") != "2" || r.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("over the limit: %d %v %v", r.status, r.body, r.header)
			}
			if r.body["error_description"] != "too many token requests for this "+tt.what+"; retry later" {
				t.Errorf("description %v", r.body["error_description"])
			}
			// Another identity (and, for the client limit, another client)
			// is not affected.
			other := exchangeForm(e.subjectToken("repo:example-org/bound:ref:refs/heads/main", nil))
			other.Set("resource", "https://payments.example.com/mcp")
			if r := e.post(t, other, nil); r.status == 429 {
				t.Fatalf("a limit spilled over to another identity: %v", r.body)
			}
		})
	}
}

// failingLimits is a shared store that cannot answer.
type failingLimits struct{}

func (failingLimits) Take(context.Context, string, float64, int, time.Time) (bool, time.Duration, error) {
	return false, 0, errors.New("store down")
}

// TestSharedLimitsDown: when the shared store cannot answer, each
// process's own buckets apply (never no limit at all).
func TestSharedLimitsDown(t *testing.T) {
	e := newEnv(t)
	e.restart(t, func(c *exchange.Config) {
		c.PerIdentity, c.SharedLimits = exchange.RateLimit{Rate: 0.5, Burst: 2}, failingLimits{}
	})
	for i := range 2 {
		if r := e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), nil); r.status != 200 {
			t.Fatalf("request %d within the burst: %d %v", i+1, r.status, r.body)
		}
	}
	if r := e.post(t, exchangeForm(e.subjectToken(mainSub, nil)), nil); r.status != 429 {
		t.Fatalf("past the burst with the shared store down: %d %v, want 429 from the local bucket", r.status, r.body)
	}
}
