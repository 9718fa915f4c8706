package exchange

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// Attributes of the token endpoint's server span, in the mcpsts.*
// namespace: who asked, what for, what was decided and why. Tokens,
// assertions, keys and secrets never go in a span. (Child spans per step
// are the audit issue's, with an exporter that keeps off the request path.)
const (
	attrGrantType       = "mcpsts.grant_type"
	attrSubjectKind     = "mcpsts.subject.kind"
	attrProvider        = "mcpsts.subject.provider"
	attrIssuer          = "mcpsts.subject.issuer"
	attrSubject         = "mcpsts.subject.id"
	attrActor           = "mcpsts.actor.id"
	attrRequestAudience = "mcpsts.request.audience"
	attrRequestScopes   = "mcpsts.request.scopes"
	attrMapID           = "mcpsts.trust_map.id"
	attrClientID        = "mcpsts.client_id"
	attrAudience        = "mcpsts.granted.audience"
	attrScopes          = "mcpsts.granted.scopes"
	attrDecision        = "mcpsts.decision"
	attrError           = "mcpsts.error"
	attrDenyReason      = "mcpsts.deny.reason"
	attrDenyDetail      = "mcpsts.deny.detail"
	attrDenyCheck       = "mcpsts.deny.check"
	attrJTI             = "mcpsts.token.jti"
	attrExpiry          = "mcpsts.token.exp"
	attrBinding         = "mcpsts.token.binding"
)

func annotate(ctx context.Context, kv ...attribute.KeyValue) {
	trace.SpanFromContext(ctx).SetAttributes(kv...)
}

func annotateIdentity(ctx context.Context, id attest.Identity, actor bool) {
	if actor {
		annotate(ctx, attribute.String(attrActor, id.Provider+"/"+id.Subject))
		return
	}
	annotate(ctx,
		attribute.String(attrSubjectKind, id.Kind), attribute.String(attrProvider, id.Provider),
		attribute.String(attrIssuer, id.Issuer), attribute.String(attrSubject, id.Subject))
}

func annotateDecision(ctx context.Context, d trustmaps.Decision) {
	annotate(ctx,
		attribute.String(attrMapID, d.MapID), attribute.String(attrClientID, d.ClientID),
		attribute.String(attrAudience, d.Audience), attribute.String(attrScopes, strings.Join(d.Scopes, " ")))
}

func annotateToken(ctx context.Context, tok issuer.Token, binding string) {
	annotate(ctx, attribute.String(attrDecision, "allow"), attribute.String(attrJTI, tok.ID),
		attribute.Int64(attrExpiry, tok.ExpiresAt.Unix()), attribute.String(attrBinding, binding))
}

func annotateRefusal(ctx context.Context, e *oauthError) {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.String(attrDecision, "deny"), attribute.String(attrError, e.code),
		attribute.String(attrDenyReason, e.description), attribute.String(attrDenyDetail, e.detail))
	if e.check != "" {
		span.SetAttributes(attribute.String(attrDenyCheck, e.check))
	}
	span.SetStatus(codes.Error, e.code)
}
