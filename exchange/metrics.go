package exchange

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// instruments are the token endpoint's metrics. Every attribute value is
// from a closed set (grant types, OAuth codes, check codes), never from the
// request, so that no client can grow their number.
type instruments struct {
	decisions metric.Int64Counter
	duration  metric.Float64Histogram
	replayed  metric.Int64Counter
	limited   metric.Int64Counter
	sets      *outcomeSets
}

// outcomeSets holds the attribute sets of each outcome, built once (a
// sync.Map would box the key on every lookup).
type outcomeSets struct {
	mu sync.RWMutex
	m  map[outcome]outcomeAttrs
}

// outcome is what a request's metrics are labelled with.
type outcome struct{ grantType, decision, code, check string }

type outcomeAttrs struct{ decision, duration metric.MeasurementOption }

func newInstruments(m metric.Meter) instruments {
	in := instruments{sets: &outcomeSets{m: map[outcome]outcomeAttrs{}}}
	in.decisions, _ = m.Int64Counter("mcpsts.token.decisions",
		metric.WithDescription("token requests by grant type, decision (allow, deny), OAuth error and the check that refused"))
	in.duration, _ = m.Float64Histogram("mcpsts.token.duration", metric.WithUnit("s"),
		metric.WithDescription("token request latency by grant type and decision"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
	in.replayed, _ = m.Int64Counter("mcpsts.token.replay_rejections",
		metric.WithDescription("single-use credentials presented again"))
	in.limited, _ = m.Int64Counter("mcpsts.token.rate_limited",
		metric.WithDescription("token requests refused by a rate limit, by limit (identity, client)"))
	return in
}

var knownGrants = map[string]bool{GrantTokenExchange: true, GrantJWTBearer: true, GrantClientCreds: true, GrantAuthorizationCode: true, GrantRefreshToken: true}

func (in instruments) record(ctx context.Context, grantType string, oerr *oauthError, d time.Duration) {
	if !knownGrants[grantType] {
		grantType = "other"
	}
	decision, code, check := "allow", "", ""
	if oerr != nil {
		decision, code, check = "deny", oerr.code, oerr.check
	}
	o := outcome{grantType, decision, code, check}
	in.sets.mu.RLock()
	a, ok := in.sets.m[o]
	in.sets.mu.RUnlock()
	if !ok {
		a = outcomeAttrs{
			decision: metric.WithAttributeSet(attribute.NewSet(attribute.String("grant_type", grantType), attribute.String("decision", decision),
				attribute.String("error", code), attribute.String("check", check))),
			duration: metric.WithAttributeSet(attribute.NewSet(attribute.String("grant_type", grantType), attribute.String("decision", decision))),
		}
		in.sets.mu.Lock()
		in.sets.m[o] = a
		in.sets.mu.Unlock()
	}
	in.decisions.Add(ctx, 1, a.decision)
	in.duration.Record(ctx, d.Seconds(), a.duration)
	switch check {
	case "token_replayed":
		in.replayed.Add(ctx, 1)
	case "rate_limit_identity", "rate_limit_client":
		in.limited.Add(ctx, 1, metric.WithAttributes(attribute.String("limit", check[len("rate_limit_"):])))
	}
}
