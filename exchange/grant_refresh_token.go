package exchange

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/mcpsts/mcpsts/exchange/authorize"
)

// refreshTokenGrant is the refresh token grant of a public client (OAuth
// 2.1 §4.3): the token is used once and rotated, its successor in the
// answer; using a rotated one again revokes its whole family (RFC 9700
// §4.14.2). It stays bound to its client and resource and never widens its
// scopes; every use checks the user's consent again. The token is claimed
// first, so a request that then fails (another client, an expired token,
// more scopes) revokes the family: no successor outlives a refusal.
type refreshTokenGrant struct{ t *tokenEndpoint }

func (g refreshTokenGrant) serve(ctx context.Context, r *http.Request, f form) (*tokenResponse, *oauthError) {
	t := g.t
	secret, clientID := f.get("refresh_token"), f.get("client_id")
	switch {
	case secret == "":
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "refresh_token is required")
	case clientID == "":
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "client_id is required")
	}
	next := authorize.Random(32)
	// The successor's sliding expiry; the store holds it within the
	// family's absolute end.
	old, err := t.cfg.Authorizations.RotateRefresh(ctx, authorize.Hash(secret), authorize.Hash(next), t.cfg.Clock().Add(t.cfg.RefreshTTL))
	if err != nil {
		return nil, t.claimRefused(ctx, err, old.ClientID, old.Family, "refresh token", "the refresh token was already used; its grant is revoked", "refresh_reused")
	}
	scopes := old.Scopes
	if requested := strings.Fields(f.get("scope")); len(requested) > 0 {
		for _, s := range requested {
			if !slices.Contains(old.Scopes, s) {
				return nil, t.revoked(ctx, old.Family, fail(http.StatusBadRequest, errInvalidScope, "a refresh never widens the grant's scopes"))
			}
		}
		scopes = requested
		if slices.Contains(old.Scopes, ScopeOfflineAccess) && !slices.Contains(scopes, ScopeOfflineAccess) {
			scopes = append(scopes, ScopeOfflineAccess) // the successor keeps the grant
		}
	}
	switch {
	case !t.cfg.Clock().Before(old.ExpiresAt):
		return nil, t.revoked(ctx, old.Family, fail(http.StatusBadRequest, errInvalidGrant, "the refresh token has expired"))
	case old.ClientID != clientID:
		e := fail(http.StatusBadRequest, errInvalidGrant, "the refresh token was issued to another client")
		e.check = "refresh_other_client"
		return nil, t.revoked(ctx, old.Family, e)
	}
	if oerr := sameResource(t, f, old.Resource); oerr != nil {
		return nil, t.revoked(ctx, old.Family, oerr)
	}
	if oerr := boundProof(ctx, old.JKT, "refresh token"); oerr != nil {
		return nil, t.revoked(ctx, old.Family, oerr)
	}
	return t.userTokens(ctx, r, userGrant{
		provider: old.Provider, subject: old.Subject, person: old.Person, clientID: old.ClientID, resource: old.Resource,
		// Decided again as the code grant it continues: the maps and the
		// client's registration see authorization_code.
		scopes: scopes, family: old.Family, familyEnd: old.FamilyExpiresAt, grantType: GrantAuthorizationCode,
	}, next)
}
