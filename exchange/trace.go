package exchange

import (
	"context"
	"encoding/json"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

// Each step of a token request is a child span of its server span: attest
// (with replay.claim and federation.fetch under it when they happen),
// decide, consent.check, mint, and for delegation inspect. The decorators
// below wrap the endpoint's dependencies once, in NewHandler, so that no
// grant can skip a span.

// maxTraceBytes bounds the explain trace a denial records.
const maxTraceBytes = 4 << 10

const (
	attrEvidenceType = "mcpsts.evidence.type"
	attrDenyTrace    = "mcpsts.deny.trace"
)

func failed(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, attest.ReasonOf(err))
	}
}

type tracedAttestor struct {
	attest.Attestor
	tracer trace.Tracer
}

func (a tracedAttestor) Attest(ctx context.Context, ev attest.Evidence) (attest.Identity, error) {
	ctx, span := a.tracer.Start(ctx, "attest", trace.WithAttributes(attribute.String(attrEvidenceType, ev.Type)))
	defer span.End()
	id, err := a.Attestor.Attest(ctx, ev)
	failed(span, err)
	return id, err
}

// explainer is a Decider that can say why it decided; *trustmaps.Policy is
// one.
type explainer interface {
	Explain(ctx context.Context, id attest.Identity, r trustmaps.Request) trustmaps.Trace
}

type tracedDecider struct {
	Decider
	tracer trace.Tracer
}

// Decide records a denial's explain trace, bounded, with the request's
// attributes (its span and audit line): operators see why, the client only
// the reason code.
func (d tracedDecider) Decide(ctx context.Context, id attest.Identity, r trustmaps.Request) (trustmaps.Decision, error) {
	requestCtx := ctx
	ctx, span := d.tracer.Start(ctx, "decide")
	defer span.End()
	dec, err := d.Decider.Decide(ctx, id, r)
	if err == nil {
		return dec, nil
	}
	span.SetStatus(codes.Error, "denied")
	if ex, ok := d.Decider.(explainer); ok {
		b, _ := json.Marshal(ex.Explain(ctx, id, r))
		annotate(requestCtx, attribute.String(attrDenyTrace, bound(string(b), maxTraceBytes)))
	}
	return dec, err
}

type tracedMinter struct {
	Minter
	tracer trace.Tracer
}

func (m tracedMinter) Mint(ctx context.Context, g issuer.Grant) (issuer.Token, error) {
	ctx, span := m.tracer.Start(ctx, "mint")
	defer span.End()
	tok, err := m.Minter.Mint(ctx, g)
	failed(span, err)
	return tok, err
}

type tracedConsents struct {
	consent.Store
	tracer trace.Tracer
}

func (c tracedConsents) Consents(ctx context.Context, provider, user, clientID string) ([]consent.Consent, error) {
	ctx, span := c.tracer.Start(ctx, "consent.check")
	defer span.End()
	cs, err := c.Store.Consents(ctx, provider, user, clientID)
	failed(span, err)
	return cs, err
}

// traced wraps cfg's dependencies so that each step is a span.
func traced(cfg Config) Config {
	atts := make(map[string]attest.Attestor, len(cfg.Attestors))
	for k, a := range cfg.Attestors {
		atts[k] = tracedAttestor{a, cfg.Tracer}
	}
	cfg.Attestors = atts
	if cfg.Decider != nil {
		cfg.Decider = tracedDecider{cfg.Decider, cfg.Tracer}
	}
	if cfg.Minter != nil {
		cfg.Minter = tracedMinter{cfg.Minter, cfg.Tracer}
	}
	if cfg.Consents != nil {
		cfg.Consents = tracedConsents{cfg.Consents, cfg.Tracer}
	}
	return cfg
}
