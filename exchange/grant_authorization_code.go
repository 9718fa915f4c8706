package exchange

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/consent"
)

// GrantRefreshToken is the refresh token grant (OAuth 2.1 §4.3).
const GrantRefreshToken = "refresh_token"

// ScopeOfflineAccess asks for a refresh token; it goes in no access token.
const ScopeOfflineAccess = authorize.ScopeOfflineAccess

// authorizationCodeGrant redeems an authorization code (OAuth 2.1 §4.1.3)
// of a public client: once, before it expires, by the client it was issued
// to, with the redirect URI of the authorization request and the PKCE
// verifier of its challenge. A second use revokes what the first issued.
// The user's consent is checked again now.
type authorizationCodeGrant struct{ t *tokenEndpoint }

func (g authorizationCodeGrant) serve(ctx context.Context, r *http.Request, f form) (*tokenResponse, *oauthError) {
	t := g.t
	code, clientID, redirect := f.get("code"), f.get("client_id"), f.get("redirect_uri")
	switch {
	case code == "":
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "code is required")
	case clientID == "":
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "client_id is required")
	case redirect == "":
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "redirect_uri is required")
	}
	c, err := t.cfg.Authorizations.RedeemCode(ctx, authorize.Hash(code))
	if err != nil {
		oerr := t.claimRefused(ctx, err, c.ClientID, c.Family, "authorization code", "the authorization code was already used; the tokens it gave are revoked", "code_reused")
		if errors.Is(err, authorize.ErrReused) {
			t.revokeAccess(ctx, c, oerr)
		}
		return nil, oerr
	}
	switch {
	case !t.cfg.Clock().Before(c.ExpiresAt):
		return nil, fail(http.StatusBadRequest, errInvalidGrant, "the authorization code has expired")
	case c.ClientID != clientID:
		return nil, fail(http.StatusBadRequest, errInvalidGrant, "the authorization code was issued to another client")
	case c.RedirectURI != redirect:
		return nil, fail(http.StatusBadRequest, errInvalidGrant, "redirect_uri is not the one of the authorization request")
	}
	if err := authorize.VerifyPKCE(c.Challenge, f.get("code_verifier")); err != nil {
		return nil, fail(http.StatusBadRequest, errInvalidGrant, err.Error())
	}
	if oerr := boundProof(ctx, c.JKT, "authorization code"); oerr != nil {
		return nil, oerr
	}
	if oerr := sameResource(t, f, c.Resource); oerr != nil {
		return nil, oerr
	}
	resp, oerr := t.userTokens(ctx, r, userGrant{
		provider: c.Provider, subject: c.Subject, person: c.Person, clientID: c.ClientID, resource: c.Resource,
		scopes: c.Scopes, family: c.Family, familyEnd: t.cfg.Clock().Add(t.cfg.RefreshMaxLifetime), grantType: GrantAuthorizationCode,
	}, "")
	if oerr != nil {
		return nil, oerr
	}
	// A second use of the code revokes this access token (RFC 6749 §4.1.2).
	if err := t.cfg.Authorizations.RecordAccess(ctx, c.Hash, resp.jti, resp.expiresAt); err != nil {
		t.cfg.Log.Warn("recording a code's access token", "error", err)
	}
	if u, ok := t.cfg.Clients.(clientUse); ok && strings.HasPrefix(c.ClientID, DynamicClientPrefix) {
		u.ClientUsed(ctx, c.ClientID)
	}
	return resp, nil
}

// clientUse records a dynamically registered client's first token (the
// registry of serve does), so that registrations never used can expire.
type clientUse interface {
	ClientUsed(ctx context.Context, id string)
}

// revokeAccess revokes the access token a reused code's first redemption
// gave, into the revocation list until it expires.
func (t *tokenEndpoint) revokeAccess(ctx context.Context, c authorize.Code, e *oauthError) {
	if c.AccessJTI == "" || t.cfg.Revocations == nil {
		return
	}
	if err := t.cfg.Revocations.Revoke(ctx, RevokeJTI, c.AccessJTI, t.cfg.Clock(), c.AccessExpiresAt); err != nil {
		e.detail = strings.TrimPrefix(e.detail+"; ", "; ") + "revoking the first redemption's access token: " + err.Error()
	}
}

// sameResource refuses a resource or audience parameter that names another
// server than the grant's: a code or refresh token narrows only to
// resources within its grant (RFC 8707 §2.2), and ours have one.
func sameResource(t *tokenEndpoint, f form, granted string) *oauthError {
	target, oerr := t.targets(f)
	switch {
	case oerr != nil:
		return oerr
	case target != "" && target != granted:
		return fail(http.StatusBadRequest, errInvalidTarget, "the grant is for another resource")
	}
	return nil
}

// userGrant is what a browser grant issues: tokens for a user, to a client,
// for one resource, as the trust maps decide again now.
type userGrant struct {
	provider, subject, clientID, resource string
	person                                authorize.Person
	scopes                                []string // the grant's, offline_access included when it has a refresh token
	family                                string
	familyEnd                             time.Time // the family's absolute end (a new refresh token's)
	grantType                             string    // as the trust maps see it
}

// userTokens issues an access token for a user's grant: the trust maps
// decide again, for the person as the grant recorded them, with this
// request's address, place, posture and time (narrowed to what they grant
// now, refused when they grant nothing); the user's consent for this
// client must still cover what is granted; the token is minted from the
// decision (binding, single use, claims, lifetime). A refresh token comes
// when offline_access is part of the grant: refresh, when the refresh
// grant has stored it already (its rotation), or a new one.
func (t *tokenEndpoint) userTokens(ctx context.Context, r *http.Request, g userGrant, refresh string) (*tokenResponse, *oauthError) {
	annotate(ctx,
		attribute.String(attrSubjectKind, "user"), attribute.String(attrProvider, g.provider), attribute.String(attrSubject, g.subject),
		attribute.String(attrClientID, g.clientID), attribute.String(attrAudience, g.resource))
	if t.cfg.Consents == nil {
		return nil, t.revoked(ctx, g.family, fail(http.StatusBadRequest, errInvalidGrant, "user grants need the consent registry, which is not enabled"))
	}
	person := attest.Identity{Kind: oidc.UserKind, Provider: g.provider, Issuer: g.person.Issuer, Subject: g.subject, Attributes: g.person.Attributes}
	asked := slices.DeleteFunc(slices.Clone(g.scopes), func(s string) bool { return s == ScopeOfflineAccess })
	d, oerr := t.decideNarrowed(ctx, r, person, trustmaps.Request{Audience: g.resource, Scopes: asked, ClientID: g.clientID, GrantType: g.grantType})
	if oerr != nil {
		// A refusal by the maps is the grant's end; a fault of the server
		// stays a fault (the family goes either way: its token was claimed).
		if oerr.status < http.StatusInternalServerError {
			e := fail(http.StatusBadRequest, errInvalidGrant, "the trust maps no longer grant this grant; it is revoked")
			e.check, e.detail = "grant_denied", oerr.description+"; "+oerr.detail
			oerr = e
		}
		return nil, t.revoked(ctx, g.family, oerr)
	}
	granted := d.Scopes
	if slices.Contains(g.scopes, ScopeOfflineAccess) {
		granted = append(slices.Clone(granted), ScopeOfflineAccess)
	}
	switch err := consent.Check(ctx, t.cfg.Consents, g.provider, g.subject, g.clientID, granted, g.resource, t.cfg.Clock()); {
	case errors.Is(err, consent.ErrNoConsent):
		e := fail(http.StatusBadRequest, errInvalidGrant, "the user's consent for this client no longer covers this grant")
		e.check = "consent_missing"
		return nil, t.revoked(ctx, g.family, e)
	case err != nil:
		return nil, storeUnavailable(err)
	}
	resp, oerr := t.issue(ctx, r, d, principal{subject: userSubject(person), kind: issuer.User}, g.scopes, TokenTypeAccessToken)
	if oerr != nil {
		return nil, t.revoked(ctx, g.family, oerr)
	}
	if refresh == "" && slices.Contains(g.scopes, ScopeOfflineAccess) {
		refresh = authorize.Random(32)
		proof, _ := proofOf(ctx) // a public client's refresh token stays bound to its key (RFC 9449 §5)
		if err := t.cfg.Authorizations.SaveRefresh(ctx, authorize.Refresh{Hash: authorize.Hash(refresh), Family: g.family, ClientID: g.clientID,
			Resource: g.resource, Scopes: g.scopes, Provider: g.provider, Subject: g.subject, TTL: d.TTL, JKT: proof.JKT, Person: g.person,
			ExpiresAt: minTime(t.cfg.Clock().Add(t.cfg.RefreshTTL), g.familyEnd), FamilyExpiresAt: g.familyEnd}); err != nil {
			return nil, storeUnavailable(err)
		}
	}
	annotate(ctx, attribute.String(attrScopes, strings.Join(d.Scopes, " ")))
	resp.IssuedTokenType, resp.RefreshToken = "", refresh
	return resp, nil
}

// minTime is the earlier of a and b, b zero meaning none.
func minTime(a, b time.Time) time.Time {
	if !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// claimRefused answers a code or refresh token (what) that the store would
// not let be claimed: one used before (reused is the answer, check the
// audit's name) revokes its grant's family; an unknown or revoked one is
// not valid; anything else is the store's fault.
func (t *tokenEndpoint) claimRefused(ctx context.Context, err error, clientID, family, what, reused, check string) *oauthError {
	switch {
	case errors.Is(err, authorize.ErrReused):
		annotate(ctx, attribute.String(attrClientID, clientID))
		e := fail(http.StatusBadRequest, errInvalidGrant, reused)
		e.check = check
		return t.revoked(ctx, family, e)
	case errors.Is(err, authorize.ErrNotFound):
		return fail(http.StatusBadRequest, errInvalidGrant, "the "+what+" is not valid")
	}
	return storeUnavailable(err)
}

// revoked revokes the refresh tokens of family and returns e: a grant
// refused after its refresh token was claimed must not leave a successor.
func (t *tokenEndpoint) revoked(ctx context.Context, family string, e *oauthError) *oauthError {
	if err := t.cfg.Authorizations.RevokeFamily(ctx, family); err != nil {
		e.detail = strings.TrimPrefix(e.detail+"; ", "; ") + "revoking the grant's refresh tokens: " + err.Error()
	}
	return e
}

// retryAfterStore is the Retry-After of an answer the store could not give.
const retryAfterStore = 5 * time.Second

// storeUnavailable answers a request whose grant the store could not read
// or write now.
func storeUnavailable(err error) *oauthError {
	e := fail(http.StatusServiceUnavailable, errUnavailable, "the grant cannot be checked now; retry later")
	e.detail, e.retryAfter = err.Error(), retryAfterStore
	return e
}
