package exchange

import (
	"context"
	"strings"
	"sync"

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

// annotations gathers a request's attributes so that its server span gets
// them in one SetAttributes call when it ends, not one per step.
type annotations struct{ kv []attribute.KeyValue }

type annotationsKey struct{}

// annotationsPool recycles the buffers: the span copies the attributes
// when they are set, so a buffer is free again once they are.
var annotationsPool = sync.Pool{New: func() any { return &annotations{kv: make([]attribute.KeyValue, 0, 24)} }}

func withAnnotations(ctx context.Context) (context.Context, *annotations) {
	a := annotationsPool.Get().(*annotations)
	return context.WithValue(ctx, annotationsKey{}, a), a
}

// flush sets the gathered attributes on span and frees the buffer.
func (a *annotations) flush(span trace.Span) {
	span.SetAttributes(a.kv...)
	clear(a.kv)
	a.kv = a.kv[:0]
	annotationsPool.Put(a)
}

func annotate(ctx context.Context, kv ...attribute.KeyValue) {
	if a, ok := ctx.Value(annotationsKey{}).(*annotations); ok {
		a.kv = append(a.kv, kv...)
		return
	}
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
	annotate(ctx, attribute.String(attrDecision, "deny"), attribute.String(attrError, e.code),
		attribute.String(attrDenyReason, e.description), attribute.String(attrDenyDetail, e.detail))
	if e.check != "" {
		annotate(ctx, attribute.String(attrDenyCheck, e.check))
	}
	trace.SpanFromContext(ctx).SetStatus(codes.Error, e.code)
}
