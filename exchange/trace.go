package exchange

import (
	"context"
	"encoding/json"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

// Each step of a token request is timed on its server span, one attribute
// per step (mcpsts.step.attest_us, decide_us, consent_us, mint_us,
// inspect_us: microseconds), with mcpsts.deny.step naming the step that
// refused; replay.claim and federation.fetch, when they happen, are child
// spans of it. (Child spans per step cost a tenth of a request's time with
// an exporter; attributes of the one span cost nothing but the clock.) The
// decorators below wrap the endpoint's dependencies once, in NewHandler, so
// that no grant can skip its timing.

// maxTraceBytes bounds the explain trace a denial records.
const maxTraceBytes = 4 << 10

const (
	attrEvidenceType = "mcpsts.evidence.type"
	attrDenyTrace    = "mcpsts.deny.trace"
	attrDenyStep     = "mcpsts.deny.step"
)

// The steps, and the attribute that times each.
const (
	stepAttest  = "attest"
	stepDecide  = "decide"
	stepConsent = "consent"
	stepMint    = "mint"
	stepInspect = "inspect"
)

var stepKeys = map[string]attribute.Key{
	stepAttest: "mcpsts.step.attest_us", stepDecide: "mcpsts.step.decide_us", stepConsent: "mcpsts.step.consent_us",
	stepMint: "mcpsts.step.mint_us", stepInspect: "mcpsts.step.inspect_us",
}

// stepDone times a step that started at start on the request's server span
// (not in the audit line: the timings are for traces), and names it as the
// step that refused when err is set.
func stepDone(ctx context.Context, name string, start time.Time, err error) {
	a, ok := ctx.Value(annotationsKey{}).(*annotations)
	if !ok {
		return
	}
	a.steps = append(a.steps, attribute.Int64(string(stepKeys[name]), time.Since(start).Microseconds()))
	if err != nil {
		a.steps = append(a.steps, attribute.String(attrDenyStep, name))
	}
}

type tracedAttestor struct{ attest.Attestor }

func (a tracedAttestor) Attest(ctx context.Context, ev attest.Evidence) (attest.Identity, error) {
	start := time.Now()
	id, err := a.Attestor.Attest(ctx, ev)
	stepDone(ctx, stepAttest, start, err)
	return id, err
}

// explainer is a Decider that can say why it decided; *trustmaps.Policy is
// one.
type explainer interface {
	Explain(ctx context.Context, id attest.Identity, r trustmaps.Request) trustmaps.Trace
}

type tracedDecider struct{ Decider }

// Decide records a denial's explain trace, bounded, with the request's
// attributes (its span and audit line): operators see why, the client only
// the reason code.
func (d tracedDecider) Decide(ctx context.Context, id attest.Identity, r trustmaps.Request) (trustmaps.Decision, error) {
	start := time.Now()
	dec, err := d.Decider.Decide(ctx, id, r)
	stepDone(ctx, stepDecide, start, err)
	if err == nil {
		return dec, nil
	}
	if ex, ok := d.Decider.(explainer); ok {
		b, _ := json.Marshal(ex.Explain(ctx, id, r))
		annotate(ctx, attribute.String(attrDenyTrace, bound(string(b), maxTraceBytes)))
	}
	return dec, err
}

type tracedMinter struct{ Minter }

func (m tracedMinter) Mint(ctx context.Context, g issuer.Grant) (issuer.Token, error) {
	start := time.Now()
	tok, err := m.Minter.Mint(ctx, g)
	stepDone(ctx, stepMint, start, err)
	return tok, err
}

type tracedConsents struct{ consent.Store }

func (c tracedConsents) Consents(ctx context.Context, provider, user, clientID string) ([]consent.Consent, error) {
	start := time.Now()
	cs, err := c.Store.Consents(ctx, provider, user, clientID)
	stepDone(ctx, stepConsent, start, err)
	return cs, err
}

// traced wraps cfg's dependencies so that each step is timed.
func traced(cfg Config) Config {
	atts := make(map[string]attest.Attestor, len(cfg.Attestors))
	for k, a := range cfg.Attestors {
		atts[k] = tracedAttestor{a}
	}
	cfg.Attestors = atts
	if cfg.Decider != nil {
		cfg.Decider = tracedDecider{cfg.Decider}
	}
	if cfg.Minter != nil {
		cfg.Minter = tracedMinter{cfg.Minter}
	}
	if cfg.Consents != nil {
		cfg.Consents = tracedConsents{cfg.Consents}
	}
	return cfg
}
