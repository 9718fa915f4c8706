package exchange

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// TokenInspector verifies this broker's own access tokens whatever their
// audience; *issuer.Issuer is one.
type TokenInspector interface {
	Inspect(raw string) (issuer.VerifiedToken, error)
}

// DefaultMaxChain is how many actors a delegation chain may hold.
const DefaultMaxChain = 3

// capTTL bounds a token's lifetime (ttl, 0 meaning the default) by the
// expiry of the credential it derives from.
func (t *tokenEndpoint) capTTL(ttl time.Duration, until time.Time) (time.Duration, *oauthError) {
	if ttl == 0 {
		ttl = t.cfg.DefaultTTL
	}
	if left := until.Sub(t.cfg.Clock()).Truncate(time.Second); left < ttl {
		ttl = left
	}
	if ttl < issuer.MinTokenLifetime {
		return 0, fail(http.StatusBadRequest, errInvalidRequest, "the subject token expires too soon")
	}
	return ttl, nil
}

// delegate handles a token exchange whose subject is one of our own access
// tokens: an MCP server that must call another one on behalf of its caller.
// It never forwards the incoming token: it mints a new one for the
// downstream server, for the same subject, recording the acting service in
// act, with no wider scopes and no longer life than the incoming token.
func (t *tokenEndpoint) delegate(ctx context.Context, r *http.Request, f form, issuedType string) (*tokenResponse, *oauthError) {
	if t.cfg.Acceptor == nil {
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "delegation is not enabled")
	}
	if f.get("actor_token") == "" {
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "delegation needs the acting service's own credential in actor_token")
	}
	start := time.Now()
	// The subject token is a statement about its subject, not the
	// actor's credential (actor_token is): its holder is not checked, the
	// rest of the one acceptance is; a single-use token is delegated once.
	in, err := t.cfg.Acceptor.Accept(ctx, f.get("subject_token"), Acceptance{UseOnce: UseDelegation})
	stepDone(ctx, stepInspect, start, err)
	switch {
	case errors.Is(err, ErrTokenRevoked):
		e := fail(http.StatusBadRequest, errInvalidRequest, "the subject token is revoked")
		e.check = "token_revoked"
		return nil, e
	case errors.Is(err, ErrTokenUsed):
		e := fail(http.StatusBadRequest, errInvalidRequest, "the single-use subject token was delegated before")
		e.check = "token_replayed"
		return nil, e
	case errors.Is(err, ErrNotAccepted):
		return nil, &oauthError{status: http.StatusBadRequest, code: errInvalidRequest, description: "the subject token is not a valid access token of this broker", detail: err.Error()}
	case err != nil:
		return nil, storeUnavailable(err)
	}
	// A workload's sub is workload:PROVIDER/SUBJECT; provider names
	// never hold '/' (the configuration refuses them), so the first '/'
	// ends the provider.
	provider, subject, ok := strings.Cut(strings.TrimPrefix(in.Subject, issuer.WorkloadSubjectPrefix), "/")
	if !strings.HasPrefix(in.Subject, issuer.WorkloadSubjectPrefix) || !ok {
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "only workload tokens can be delegated")
	}
	actor, oerr := t.attestActor(ctx, r, f, "delegation needs the acting service's own credential in actor_token")
	if oerr != nil {
		return nil, oerr
	}
	depth := 0
	for a := in.Actor; a != nil; a = a.Actor {
		depth++
	}
	if depth+1 > t.cfg.MaxChain {
		return nil, fail(http.StatusBadRequest, errInvalidRequest, fmt.Sprintf("the delegation chain would exceed %d actors", t.cfg.MaxChain))
	}
	target, oerr := t.targets(f)
	switch {
	case oerr != nil:
		return nil, oerr
	case target == "":
		return nil, fail(http.StatusBadRequest, errInvalidTarget, "delegation needs the downstream server in resource")
	case target == in.Audience:
		return nil, fail(http.StatusBadRequest, errInvalidTarget, "a token cannot be exchanged for its own audience")
	}
	scopes := strings.Fields(f.get("scope"))
	if len(scopes) == 0 {
		scopes = in.Scopes
	}
	for _, s := range scopes {
		if !slices.Contains(in.Scopes, s) {
			return nil, fail(http.StatusBadRequest, errInvalidScope, "a delegated token cannot hold a scope the incoming token lacks")
		}
	}
	original := attest.Identity{Kind: "delegated", Provider: provider, Subject: subject}
	annotateIdentity(ctx, original, false)
	d, oerr := t.decideGrant(ctx, r, original, trustmaps.Request{Audience: target, Scopes: scopes, GrantType: GrantTokenExchange})
	if oerr != nil {
		return nil, oerr
	}
	if oerr := sentClient(ctx, f, d); oerr != nil {
		return nil, oerr
	}
	if !t.cfg.Decider.MayAct(d.MapID, actor) {
		return nil, &oauthError{status: http.StatusBadRequest, code: errInvalidRequest,
			description: "the acting service may not act for this subject at this server (may_act)",
			detail:      fmt.Sprintf("map %s, actor %s/%s", d.MapID, actor.Provider, actor.Subject)}
	}
	return t.issue(ctx, r, d, principal{subject: provider + "/" + subject, kind: issuer.Workload, notAfter: in.ExpiresAt,
		actor: &issuer.Actor{Subject: issuer.WorkloadSubjectPrefix + actor.Provider + "/" + actor.Subject, ClientID: in.ClientID, Actor: in.Actor}},
		scopes, issuedType)
}
