package exchange

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

// onBehalfOfUser handles a user's token as the subject: a workload (the
// actor) acts for the user. The trust maps decide what the workload may
// get; the user's consent to exactly that client must cover it. The token
// names the user in sub and the workload in act.
// attestActor verifies the actor_token: the acting workload's own
// credential (never a user's), counted against its rate limit. missing is
// the description when there is no actor_token.
func (t *tokenEndpoint) attestActor(ctx context.Context, r *http.Request, f form, missing string) (attest.Identity, *oauthError) {
	actorToken, actorType := f.get("actor_token"), f.get("actor_token_type")
	if actorToken == "" {
		return attest.Identity{}, fail(http.StatusBadRequest, errInvalidRequest, missing)
	}
	att, ok := t.cfg.Attestors[actorType]
	if !ok {
		return attest.Identity{}, fail(http.StatusBadRequest, errInvalidRequest, "unsupported actor_token_type "+truncate(actorType))
	}
	actor, err := att.Attest(ctx, attest.Evidence{Type: actorType, Token: []byte(actorToken), PeerCertificates: peer(r)})
	if err != nil {
		return attest.Identity{}, attestError(err, errInvalidRequest)
	}
	annotateIdentity(ctx, actor, true)
	if actor.Kind == oidc.UserKind {
		return attest.Identity{}, fail(http.StatusBadRequest, errInvalidRequest, "the actor must be a workload, not a user")
	}
	if ok, wait := t.perIdentity.allow(ctx, actor.Provider+"\x00"+actor.Subject); !ok {
		return attest.Identity{}, limited("identity", wait)
	}
	return actor, nil
}

func (t *tokenEndpoint) onBehalfOfUser(ctx context.Context, r *http.Request, f form, user attest.Identity, issuedType string) (*tokenResponse, *oauthError) {
	actor, oerr := t.attestActor(ctx, r, f, "a user's token needs the acting workload's credential in actor_token: a login never implies consent for a client")
	if oerr != nil {
		return nil, oerr
	}
	target, oerr := t.targets(f)
	if oerr != nil {
		return nil, oerr
	}
	scopes := strings.Fields(f.get("scope"))
	// The agent's maps decide (with the agent's posture and place); the
	// person's consent bounds what they give.
	d, oerr := t.decideGrant(ctx, r, actor, trustmaps.Request{Audience: target, Scopes: scopes, GrantType: GrantTokenExchange})
	if oerr != nil {
		return nil, oerr
	}
	if t.cfg.Consents == nil {
		return nil, fail(http.StatusBadRequest, errInvalidGrant, "user-delegated tokens need the consent registry, which is not enabled")
	}
	annotateIdentity(ctx, user, false)
	if oerr := sentClient(ctx, f, d); oerr != nil {
		return nil, oerr
	}
	switch err := consent.Check(ctx, t.cfg.Consents, user.Provider, user.Subject, d.ClientID, d.Scopes, d.Audience, t.cfg.Clock()); {
	case errors.Is(err, consent.ErrNoConsent):
		return nil, &oauthError{status: http.StatusBadRequest, code: errInvalidGrant,
			description: fmt.Sprintf("the user has not consented to client %q for these scopes at this resource", d.ClientID),
			detail:      "no active consent"}
	case err != nil:
		return nil, &oauthError{status: http.StatusServiceUnavailable, code: errUnavailable, description: "consent cannot be checked now; retry later", detail: err.Error()}
	}
	return t.issue(ctx, r, d, principal{subject: userSubject(user), kind: issuer.User, notAfter: user.Expiry,
		actor: &issuer.Actor{Subject: issuer.WorkloadSubjectPrefix + actor.Provider + "/" + actor.Subject, ClientID: d.ClientID}},
		scopes, issuedType)
}

// userSubject is the subject of a person's grant, PROVIDER/SUBJECT: their
// tokens' sub is issuer.UserSubjectPrefix and it (see issuer.User).
func userSubject(user attest.Identity) string { return user.Provider + "/" + user.Subject }
