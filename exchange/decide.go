package exchange

import (
	"context"
	"net/http"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// The one decide step. Every grant gathers the identity whose rules decide
// and what the request asks for, then calls decideGrant, which adds what
// every grant shares (the source address and its place, posture, mTLS, the
// time), asks the trust maps and records the decision; the grant then
// mints only from the decision it returned (issue): client, audience,
// scopes, lifetime (bounded by max_ttl), required binding, single use and
// extra claims all come from it, so that no grant can drop one.

// decideGrant decides req for id. req names what the grant asks for
// (Audience, Scopes, GrantType, and ClientID or AuthorizationServer when
// the grant names them); the rest is filled in here.
func (t *tokenEndpoint) decideGrant(ctx context.Context, r *http.Request, id attest.Identity, req trustmaps.Request) (trustmaps.Decision, *oauthError) {
	return t.decideWith(ctx, r, id, req, false)
}

// decideNarrowed is decideGrant for a grant made before (a code, a refresh
// token): scopes the maps no longer grant are dropped, as the browser flow
// drops them (authorize.Narrow); none granted is a refusal.
func (t *tokenEndpoint) decideNarrowed(ctx context.Context, r *http.Request, id attest.Identity, req trustmaps.Request) (trustmaps.Decision, *oauthError) {
	return t.decideWith(ctx, r, id, req, true)
}

func (t *tokenEndpoint) decideWith(ctx context.Context, r *http.Request, id attest.Identity, req trustmaps.Request, narrow bool) (trustmaps.Decision, *oauthError) {
	req.SourceIP, req.MTLS, req.Time = sourceIP(r), len(peer(r)) > 0, t.cfg.Clock()
	t.conditionInputs(ctx, id, &req) // once, however often narrowing asks
	ask := func(scopes []string) (trustmaps.Decision, error) {
		q := req
		q.Scopes = scopes
		return t.decide(ctx, id, q)
	}
	var d trustmaps.Decision
	var err error
	if narrow {
		d, err = authorize.Narrow(req.Scopes, ask)
	} else {
		d, err = ask(req.Scopes)
	}
	if err != nil {
		return d, decisionError(err, req.GrantType)
	}
	annotateDecision(ctx, d)
	return d, nil
}

// principal is whom a token is for, which the decision does not say: its
// subject, the delegation chain, and the end of the credential it derives
// from (zero: none).
type principal struct {
	subject  string
	kind     issuer.SubjectType
	actor    *issuer.Actor
	notAfter time.Time
}

// issue mints the token a decision grants to who; requested are the
// scopes the client asked for (the answer names the granted ones when
// they differ).
func (t *tokenEndpoint) issue(ctx context.Context, r *http.Request, d trustmaps.Decision, who principal, requested []string, issuedType string) (*tokenResponse, *oauthError) {
	ttl := d.TTL
	if !who.notAfter.IsZero() {
		var oerr *oauthError
		if ttl, oerr = t.capTTL(d.TTL, who.notAfter); oerr != nil {
			return nil, oerr
		}
	}
	g := issuer.Grant{
		Subject: who.subject, SubjectType: who.kind, Actor: who.actor,
		Audience: d.Audience, ClientID: d.ClientID, Scopes: d.Scopes, TTL: ttl, Claims: d.Claims, SingleUse: d.SingleUse,
	}
	return t.mint(ctx, r, g, d.Binding, requested, issuedType)
}
