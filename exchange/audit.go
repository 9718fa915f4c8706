package exchange

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/internal/auditvalue"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// Attributes of the token endpoint's server span, in the mcpsts.*
// namespace: who asked, what for, what was decided and why. Tokens,
// assertions, keys and secrets never go in a span.
const (
	attrGrantType       = "mcpsts.grant_type"
	attrSourceIP        = "mcpsts.source_ip" // the request's source address (behind a trusted proxy, the client's)
	attrSubjectKind     = "mcpsts.subject.kind"
	attrProvider        = "mcpsts.subject.provider"
	attrIssuer          = "mcpsts.subject.issuer"
	attrSubject         = "mcpsts.subject.id"
	attrActor           = "mcpsts.actor.id"
	attrRequestAudience = "mcpsts.request.audience"
	attrRequestScopes   = "mcpsts.request.scopes"
	attrRequestClientID = "mcpsts.request.client_id"
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
	attrDPoPJKT         = "mcpsts.dpop.jkt"
	// attrIDJAGTarget is the authorization server an ID-JAG is issued for
	// (SEP-990), attrIssuedType the token type issued when not an access
	// token.
	attrIDJAGTarget = "mcpsts.id_jag.authorization_server"
	attrIssuedType  = "mcpsts.token.issued_type"
	// What the maps read beyond the request: each posture source's status
	// (with the assertion's age and why one is missing), and the place of
	// the source address when a map uses geolocation.
	attrPosture = "mcpsts.posture"
	attrPlace   = "mcpsts.place"
	// What a replay of the decision against other maps needs (package
	// trustmaps/impact): JSON of the identity (with the attributes the
	// maps read), of the request, and of the maps' outcome.
	attrReplayIdentity = "mcpsts.replay.identity"
	attrReplayRequest  = "mcpsts.replay.request"
	attrReplayOutcome  = "mcpsts.replay.outcome"
)

// Bounds of the replay fields of an audit line (with the explain trace's
// 4 KiB, a line stays under 8 KiB): past one, the decision is recorded
// without them, and counted as not replayable.
const (
	maxReplayIdentity = 1536
	maxReplayRequest  = 768
	maxReplayOutcome  = 512
)

// annotations gathers a request's attributes so that its server span gets
// them in one SetAttributes call when it ends, not one per step.
type annotations struct {
	kv    []attribute.KeyValue
	steps []attribute.KeyValue // the span's only: step timings
}

type annotationsKey struct{}

// annotationsPool recycles the buffers: the span copies the attributes
// when they are set, so a buffer is free again once they are.
var annotationsPool = sync.Pool{New: func() any {
	return &annotations{kv: make([]attribute.KeyValue, 0, 32), steps: make([]attribute.KeyValue, 0, 6)}
}}

func withAnnotations(ctx context.Context) (context.Context, *annotations) {
	a := annotationsPool.Get().(*annotations)
	return context.WithValue(ctx, annotationsKey{}, a), a
}

// flush sets the gathered attributes on span and frees the buffer.
func (a *annotations) flush(span trace.Span) {
	if span.IsRecording() {
		span.SetAttributes(a.kv...)
		span.SetAttributes(a.steps...)
	}
	clear(a.kv)
	clear(a.steps)
	a.kv, a.steps = a.kv[:0], a.steps[:0]
	annotationsPool.Put(a)
}

// maxAttrBytes bounds a string attribute, in a span and an audit line
// (the explain trace has a bound of its own, maxTraceBytes).
const maxAttrBytes = auditvalue.Max

// bound returns s as valid UTF-8 of at most n bytes.
func bound(s string, n int) string { return auditvalue.Bound(s, n) }

func annotate(ctx context.Context, kv ...attribute.KeyValue) {
	for i, a := range kv {
		if a.Value.Type() == attribute.STRING && a.Key != attrDenyTrace && !strings.HasPrefix(string(a.Key), "mcpsts.replay.") {
			if v := a.Value.AsString(); len(v) > maxAttrBytes || !utf8.ValidString(v) {
				kv[i] = attribute.String(string(a.Key), bound(v, maxAttrBytes))
			}
		}
	}
	if a, ok := ctx.Value(annotationsKey{}).(*annotations); ok {
		a.add(kv)
		return
	}
	trace.SpanFromContext(ctx).SetAttributes(kv...)
}

// add appends kv; a key given before takes its new value, so that the
// audit line, which is written from the buffer, never repeats a member.
func (a *annotations) add(kv []attribute.KeyValue) {
next:
	for _, n := range kv {
		for i := range a.kv {
			if a.kv[i].Key == n.Key {
				a.kv[i] = n
				continue next
			}
		}
		a.kv = append(a.kv, n)
	}
}

// DecisionLog records each decision of the token endpoint: its name
// (token.allow, token.deny), when, the request's trace context and the
// mcpsts.* attributes of its server span; *auditlog.Log is one. It is
// written by the endpoint itself, not from the span, so that a server
// that exports no spans records none for its token requests.
//
// An error means the decision was not recorded: the endpoint then refuses
// to issue the token (503 temporarily_unavailable), as an audit log that
// cannot be written must not let tokens out unrecorded.
type DecisionLog interface {
	Decision(name string, at time.Time, sc trace.SpanContext, attrs []attribute.KeyValue) error
}

// auditFailed is the answer in place of a token that could not be
// recorded.
func auditFailed(err error) *oauthError {
	e := fail(http.StatusServiceUnavailable, errUnavailable, "the decision could not be recorded in the audit log; retry later")
	e.detail, e.check = err.Error(), "audit_log"
	return e
}

// localSpanContext gives a request that no tracer records a span ID of
// its own, in the caller's trace or in a new one: its audit line, log
// line and error answer name it.
func localSpanContext(parent trace.SpanContext) trace.SpanContext {
	c := trace.SpanContextConfig{TraceID: parent.TraceID(), TraceFlags: parent.TraceFlags()}
	for !c.TraceID.IsValid() {
		binary.BigEndian.PutUint64(c.TraceID[:8], rand.Uint64())
		binary.BigEndian.PutUint64(c.TraceID[8:], rand.Uint64())
	}
	for !c.SpanID.IsValid() {
		binary.BigEndian.PutUint64(c.SpanID[:], rand.Uint64())
	}
	return trace.NewSpanContext(c)
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
