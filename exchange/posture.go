package exchange

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/posture"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// ParamPostureToken carries a signed posture assertion (a JWT from an
// endpoint-detection or compliance service) with any token request; it is
// repeatable, one per source. A client that sends none is decided without
// them.
const ParamPostureToken = "posture_token"

// PostureSources says what the posture sources say of an identity, for
// the sources read (a source no map reads is not asked); *posture.Set is
// one.
type PostureSources interface {
	Evaluate(ctx context.Context, id attest.Identity, assertions []string, read func(source string) bool) []attest.Posture
}

// conditionInputs is what a Decider may say of the inputs its maps read
// (*trustmaps.Policy does).
type conditionInputs interface {
	ReadsContext(source string) bool
	ReadsPlace() bool
	Place(sourceIP string) (trustmaps.Place, bool)
}

type postureTokensKey struct{}

// withPostureTokens keeps a request's posture assertions for the decision,
// within their bounds.
func withPostureTokens(ctx context.Context, f form) (context.Context, *oauthError) {
	tokens := f[ParamPostureToken]
	if len(tokens) == 0 {
		return ctx, nil
	}
	if len(tokens) > posture.MaxAssertions {
		return ctx, fail(http.StatusBadRequest, errInvalidRequest, fmt.Sprintf("at most %d %s parameters", posture.MaxAssertions, ParamPostureToken))
	}
	for _, tok := range tokens {
		if len(tok) > posture.MaxAssertionSize {
			return ctx, fail(http.StatusBadRequest, errInvalidRequest, fmt.Sprintf("a %s is larger than %d bytes", ParamPostureToken, posture.MaxAssertionSize))
		}
	}
	return context.WithValue(ctx, postureTokensKey{}, tokens), nil
}

// conditionInputs adds to req what the maps read beyond the request: the
// posture of the identity and the place of the source address, and records
// both (never an assertion) in the audit record.
func (t *tokenEndpoint) conditionInputs(ctx context.Context, id attest.Identity, req *trustmaps.Request) {
	in := t.inputs
	if in == nil {
		return
	}
	if t.cfg.Posture != nil {
		tokens, _ := ctx.Value(postureTokensKey{}).([]string)
		req.Posture = t.cfg.Posture.Evaluate(ctx, id, tokens, in.ReadsContext)
		if len(req.Posture) > 0 {
			annotate(ctx, attribute.String(attrPosture, postureSummary(req.Posture, req)))
		}
	}
	if in.ReadsPlace() {
		if p, ok := in.Place(req.SourceIP); ok {
			annotate(ctx, attribute.String(attrPlace, placeSummary(p)))
		}
	}
}

// postureSummary is one line: source status (age) [reason]; …
func postureSummary(ps []attest.Posture, req *trustmaps.Request) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Source + " " + p.Status)
		if !p.IssuedAt.IsZero() {
			b.WriteString(" age=" + req.Time.Sub(p.IssuedAt).Round(1e9).String())
		}
		if p.Reason != "" {
			b.WriteString(" (" + bound(p.Reason, 160) + ")")
		}
	}
	return b.String()
}

// placeSummary: country=DE continent=EU asn=3320, "unknown" for an address
// the database does not know.
func placeSummary(p trustmaps.Place) string {
	if p == (trustmaps.Place{}) {
		return "unknown"
	}
	return fmt.Sprintf("country=%s continent=%s asn=%d", p.Country, p.Continent, p.ASN)
}
