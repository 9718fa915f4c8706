package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/issuer"
)

// Introspection (RFC 7662) and revocation (RFC 7009) share the token
// endpoint's configuration: its attestors authenticate callers, its issuer
// reads tokens, the store holds the revocation list and single-use claims.

// IntrospectionCaller is a workload allowed to introspect the tokens of
// some MCP servers: an MCP server's own identity, as a trusted provider (or
// SPIFFE trust domain) names it.
type IntrospectionCaller struct {
	Provider  string   `yaml:"provider"`
	Subject   string   `yaml:"subject"`
	Audiences []string `yaml:"audiences"`
}

// LifecycleConfig configures introspection and revocation.
type LifecycleConfig struct {
	// Callers may introspect tokens for their audiences.
	Callers []IntrospectionCaller
	// AdminAudience and AdminScope: a bearer token of ours for that
	// audience with that scope introspects any token.
	AdminAudience, AdminScope string
	// Revocations is the revocation list; nil: no access token is ever
	// revoked (revocation answers 503).
	Revocations Revocations
	// SingleUse claims single-use tokens at their first introspection:
	// the store's replay cache, shared by the replicas.
	SingleUse attest.ReplayCache
	// MaxTTL is the longest token lifetime: how long a revocation of a
	// subject or client is kept (0: 60m).
	MaxTTL time.Duration
}

type lifecycle struct {
	t   *tokenEndpoint
	cfg LifecycleConfig
}

// NewLifecycleHandlers returns the introspection and the revocation
// endpoints (POST), which share the token endpoint's configuration and one
// per-source limit.
func NewLifecycleHandlers(cfg Config, lc LifecycleConfig) (introspect, revoke http.Handler) {
	if lc.MaxTTL == 0 {
		lc.MaxTTL = time.Hour
	}
	if cfg.Revocations == nil {
		cfg.Revocations = lc.Revocations
	}
	if cfg.Acceptor == nil && cfg.Tokens != nil {
		cfg.Acceptor, _ = NewAcceptor(AcceptorConfig{Tokens: cfg.Tokens, Revocations: lc.Revocations, SingleUse: lc.SingleUse, Clock: cfg.Clock})
	}
	if cfg.Acceptor != nil && lc.Revocations != nil {
		lc.Revocations = cfg.Acceptor // a revocation here is seen here at once
	}
	l := &lifecycle{t: NewHandler(cfg).(*tokenEndpoint), cfg: lc}
	return http.HandlerFunc(l.introspect), http.HandlerFunc(l.revoke)
}

// introspection is the answer (RFC 7662 §2.2): active, and for an active
// token its claims.
type introspection struct {
	Active    bool           `json:"active"`
	Scope     string         `json:"scope,omitempty"`
	ClientID  string         `json:"client_id,omitempty"`
	TokenType string         `json:"token_type,omitempty"`
	Exp       int64          `json:"exp,omitempty"`
	Iat       int64          `json:"iat,omitempty"`
	Sub       string         `json:"sub,omitempty"`
	Aud       string         `json:"aud,omitempty"`
	Iss       string         `json:"iss,omitempty"`
	JTI       string         `json:"jti,omitempty"`
	Act       *issuer.Actor  `json:"act,omitempty"`
	Cnf       map[string]any `json:"cnf,omitempty"`
	SingleUse bool           `json:"single_use,omitempty"`
}

// authenticated is who calls: a workload, or an administrator.
type authenticated struct {
	id    attest.Identity
	admin bool
	name  string // for the audit record
}

// authenticate checks the caller: a workload JWT as client_assertion, a
// client certificate (an X.509-SVID), or an admin token as bearer.
func (l *lifecycle) authenticate(ctx context.Context, r *http.Request, f form) (authenticated, *oauthError) {
	t := l.t
	switch {
	case f.get("client_assertion") != "":
		if f.get("client_assertion_type") != AssertionJWTBearer {
			return authenticated{}, fail(http.StatusUnauthorized, errInvalidClient, "client_assertion_type must be "+AssertionJWTBearer)
		}
		att, ok := t.cfg.Attestors[GrantJWTBearer]
		if !ok {
			return authenticated{}, fail(http.StatusUnauthorized, errInvalidClient, "workload assertions are not enabled")
		}
		id, err := att.Attest(ctx, attest.Evidence{Type: AssertionJWTBearer, Token: []byte(f.get("client_assertion")), PeerCertificates: peer(r)})
		if err != nil || id.Kind == oidc.UserKind {
			e := fail(http.StatusUnauthorized, errInvalidClient, "the client assertion was refused")
			if err != nil {
				e.check, e.detail = attest.ReasonOf(err), err.Error()
			}
			return authenticated{}, e
		}
		return authenticated{id: id, name: id.Provider + "/" + id.Subject}, nil
	case strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "):
		if t.cfg.Tokens == nil || l.cfg.AdminAudience == "" {
			return authenticated{}, fail(http.StatusUnauthorized, errInvalidClient, "admin tokens are not accepted here")
		}
		v, err := t.cfg.Acceptor.Accept(ctx, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "),
			Acceptance{Audience: l.cfg.AdminAudience, Holder: true, Peer: peer(r), UseOnce: UseAccess})
		switch {
		case err != nil && !errors.Is(err, ErrNotAccepted):
			return authenticated{}, storeUnavailable(err)
		case err != nil || !v.HasScope(l.cfg.AdminScope):
			e := fail(http.StatusUnauthorized, errInvalidClient, "the bearer token is not an admin token")
			if err != nil {
				e.detail = err.Error()
			}
			return authenticated{}, e
		}
		return authenticated{admin: true, name: "admin:" + v.ClientID + ":" + v.Subject}, nil
	case len(peer(r)) > 0 && t.cfg.Attestors[EvidenceTLSClient] != nil:
		id, err := t.cfg.Attestors[EvidenceTLSClient].Attest(ctx, attest.Evidence{Type: EvidenceTLSClient, PeerCertificates: peer(r)})
		if err != nil {
			e := fail(http.StatusUnauthorized, errInvalidClient, "the client certificate was refused")
			e.check, e.detail = attest.ReasonOf(err), err.Error()
			return authenticated{}, e
		}
		return authenticated{id: id, name: id.Provider + "/" + id.Subject}, nil
	}
	return authenticated{}, fail(http.StatusUnauthorized, errInvalidClient,
		"authenticate with the workload's own credential (client_assertion), a client certificate, or an admin token")
}

// audiences a workload caller may introspect.
func (l *lifecycle) audiences(a authenticated) []string {
	var out []string
	for _, c := range l.cfg.Callers {
		if c.Provider == a.id.Provider && c.Subject == a.id.Subject {
			out = append(out, c.Audiences...)
		}
	}
	return out
}

// parse reads a request after the per-source limit, as the token endpoint
// does.
func (l *lifecycle) parse(r *http.Request) (form, *oauthError) {
	if ok, wait := l.t.perSource.allow(l.t.cfg.SourcePrefixes.key(r)); !ok {
		return nil, limited("source", wait)
	}
	return l.t.parse(r)
}

func (l *lifecycle) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, oerr := l.parse(r)
	var caller authenticated
	if oerr == nil {
		caller, oerr = l.authenticate(ctx, r, f)
	}
	var allowed []string
	if oerr == nil && !caller.admin {
		if allowed = l.audiences(caller); len(allowed) == 0 {
			oerr = fail(http.StatusUnauthorized, errInvalidClient, "this workload is not an introspection caller (introspection.callers)")
		}
	}
	if oerr == nil && f.get("token") == "" {
		oerr = fail(http.StatusBadRequest, errInvalidRequest, "token is required")
	}
	if oerr != nil {
		l.audit(ctx, "token.introspect_refused", attribute.String(attrError, oerr.code), attribute.String(attrDenyReason, oerr.description))
		writeError(w, oerr, "")
		return
	}
	answer, why, err := l.inspect(ctx, f.get("token"), caller.admin, allowed)
	if err != nil {
		writeError(w, storeUnavailable(err), "")
		return
	}
	l.audit(ctx, "token.introspect", attribute.String("mcpsts.caller", bound(caller.name, maxAttrBytes)), attribute.Bool("mcpsts.token.active", answer.Active),
		attribute.String(attrJTI, answer.JTI), attribute.String(attrDenyReason, why))
	noStore(w)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(answer)
}

// inspect answers for one token: inactive, with the reason for the audit
// record only, unless it is ours, live, for an audience the caller may
// see, not revoked, and (single use) not used before.
func (l *lifecycle) inspect(ctx context.Context, raw string, admin bool, allowed []string) (introspection, string, error) {
	t := l.t
	v, err := t.cfg.Tokens.Inspect(raw)
	if err != nil {
		return l.inspectRefresh(ctx, raw, admin, allowed)
	}
	if !admin && !slices.Contains(allowed, v.Audience) {
		return introspection{}, "another audience's token", nil
	}
	// The resource server checks the holder (RFC 8705 §3, RFC 9449 §7);
	// the rest is the one acceptance every path applies.
	switch v, err = t.cfg.Acceptor.AcceptVerified(ctx, v, Acceptance{UseOnce: UseAccess}); {
	case errors.Is(err, ErrTokenRevoked):
		return introspection{}, "revoked", nil
	case errors.Is(err, ErrTokenUsed):
		return introspection{}, "single-use token used before", nil
	case errors.Is(err, ErrNotAccepted):
		return introspection{}, "not a token of this server", nil
	case err != nil:
		return introspection{}, "", err
	}
	out := introspection{Active: true, Scope: strings.Join(v.Scopes, " "), ClientID: v.ClientID, TokenType: "Bearer",
		Exp: v.ExpiresAt.Unix(), Iat: v.IssuedAt.Unix(), Sub: v.Subject, Aud: v.Audience, Iss: t.cfg.issuer(), JTI: v.ID, Act: v.Actor, SingleUse: v.SingleUse}
	if c := v.Cnf; c != nil {
		if c.JKT != "" {
			out.Cnf, out.TokenType = map[string]any{"jkt": c.JKT}, "DPoP"
		} else {
			out.Cnf = map[string]any{"x5t#S256": c.X5TS256}
		}
	}
	return out, "", nil
}

// inspectRefresh answers for a refresh token (ours are opaque).
func (l *lifecycle) inspectRefresh(ctx context.Context, raw string, admin bool, allowed []string) (introspection, string, error) {
	if l.t.cfg.Authorizations == nil || strings.Count(raw, ".") == 2 {
		return introspection{}, "not a token of this server", nil
	}
	rt, err := l.t.cfg.Authorizations.LookupRefresh(ctx, authorize.Hash(raw))
	switch {
	case errors.Is(err, authorize.ErrNotFound):
		return introspection{}, "not a token of this server", nil
	case err != nil:
		return introspection{}, "", err
	case !l.t.cfg.Clock().Before(rt.ExpiresAt):
		return introspection{}, "expired", nil
	case !admin && !slices.Contains(allowed, rt.Resource):
		return introspection{}, "another audience's token", nil
	}
	return introspection{Active: true, Scope: strings.Join(rt.Scopes, " "), ClientID: rt.ClientID, TokenType: "refresh_token",
		Exp: rt.ExpiresAt.Unix(), Sub: rt.Subject, Aud: rt.Resource, Iss: l.t.cfg.issuer()}, "", nil
}

// issuer is this server's issuer, for iss.
func (c Config) issuer() string {
	if len(c.Self) > 0 {
		return c.Self[0]
	}
	return ""
}

func (l *lifecycle) audit(ctx context.Context, name string, attrs ...attribute.KeyValue) {
	if l.t.cfg.Audit == nil {
		return
	}
	if err := l.t.cfg.Audit.Decision(name, l.t.cfg.Clock(), trace.SpanContextFromContext(ctx), attrs); err != nil {
		l.t.cfg.Log.Error("audit log", "event", name, "error", err)
	}
}
