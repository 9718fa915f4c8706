package exchange

import (
	"context"

	"go.opentelemetry.io/otel/attribute"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/impact"
)

// decide asks the trust maps for id and records, for the audit line, what
// a replay of this decision against other maps needs: the identity with
// the attributes the maps read (Config.ReplayAttributes), the request and
// the outcome: every grant's decision, through decideGrant (the identity
// is the one the maps decide for: the subject, or the agent acting for a
// person). The posture and place are already in req.
func (t *tokenEndpoint) decide(ctx context.Context, id attest.Identity, req trustmaps.Request) (trustmaps.Decision, error) {
	d, err := t.cfg.Decider.Decide(ctx, id, req)
	if t.cfg.Audit == nil {
		return d, err
	}
	rid := impact.Identity{Kind: id.Kind, Provider: id.Provider, Issuer: id.Issuer, Subject: id.Subject}
	if t.cfg.ReplayAttributes != nil && len(id.Attributes) > 0 {
		names, all := t.cfg.ReplayAttributes()
		rid.Attributes = impact.Recorded(id.Attributes, names, all)
	}
	// The three documents in one buffer, and one string for all three.
	request := impact.Request{GrantType: req.GrantType, Audience: req.Audience, Scopes: req.Scopes, ClientID: req.ClientID,
		AuthorizationServer: req.AuthorizationServer, SourceIP: req.SourceIP, MTLS: req.MTLS}
	outcome := impact.OutcomeOf(d, err)
	var stack [1024]byte
	buf := rid.AppendJSON(stack[:0])
	i := len(buf)
	buf = request.AppendJSON(buf)
	j := len(buf)
	buf = outcome.AppendJSON(buf)
	if i > maxReplayIdentity || j-i > maxReplayRequest || len(buf)-j > maxReplayOutcome {
		return d, err // too large to record: the line is not replayable
	}
	docs := string(buf)
	annotate(ctx, attribute.String(attrReplayIdentity, docs[:i]), attribute.String(attrReplayRequest, docs[i:j]),
		attribute.String(attrReplayOutcome, docs[j:]))
	return d, err
}
