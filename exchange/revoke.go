package exchange

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// revoke is the revocation endpoint (RFC 7009): the client that holds a
// token revokes it. A workload client authenticates as at the client
// credentials grant (client_assertion, or a client certificate) and must be
// the token's client or subject; a public client (the browser flows) sends
// its client_id, which must be the token's: holding the token is its
// proof. An access token's jti enters the revocation list until its
// expiry; a refresh token's family is revoked. An unknown, invalid or
// expired token is answered 200 as RFC 7009 §2.2 says.
func (l *lifecycle) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, oerr := l.parse(r)
	if oerr == nil && f.get("token") == "" {
		oerr = fail(http.StatusBadRequest, errInvalidRequest, "token is required")
	}
	var caller authenticated
	workload := false
	if oerr == nil {
		switch {
		case f.get("client_assertion") != "" || len(peer(r)) > 0:
			caller, oerr = l.authenticate(ctx, r, f)
			workload = true
		case f.get("client_id") != "":
			caller.name = "public:" + f.get("client_id")
		default:
			oerr = fail(http.StatusUnauthorized, errInvalidClient, "authenticate as the token's client: client_assertion, a client certificate, or (a public client) client_id")
		}
	}
	var what string
	if oerr == nil {
		what, oerr = l.revokeToken(ctx, r, f, caller, workload)
	}
	if oerr != nil {
		l.audit(ctx, "token.revoke_refused", attribute.String("mcpsts.caller", bound(caller.name, maxAttrBytes)),
			attribute.String(attrError, oerr.code), attribute.String(attrDenyReason, oerr.description))
		writeError(w, oerr, "")
		return
	}
	l.audit(ctx, "token.revoke", attribute.String("mcpsts.caller", bound(caller.name, maxAttrBytes)), attribute.String("mcpsts.revoked", what))
	noStore(w)
	w.WriteHeader(http.StatusOK)
}

var errNotYours = &oauthError{status: http.StatusBadRequest, code: "unauthorized_client", description: "the token was not issued to this client"}

// revokeToken revokes an access token or a refresh token (whichever the
// token is, the hint notwithstanding: RFC 7009 §2.1) and says what it did.
func (l *lifecycle) revokeToken(ctx context.Context, r *http.Request, f form, caller authenticated, workload bool) (string, *oauthError) {
	raw := f.get("token")
	if v, err := l.t.cfg.Tokens.Inspect(raw); err == nil {
		if !l.holds(ctx, r, caller, workload, f, v) {
			return "", errNotYours
		}
		if l.cfg.Revocations == nil {
			return "", fail(http.StatusServiceUnavailable, errUnavailable, "access tokens cannot be revoked here")
		}
		if err := l.cfg.Revocations.Revoke(ctx, RevokeJTI, v.ID, l.t.cfg.Clock(), v.ExpiresAt); err != nil {
			return "", storeUnavailable(err)
		}
		return "access_token " + v.ID, nil
	}
	if l.t.cfg.Authorizations == nil || strings.Count(raw, ".") == 2 {
		return "nothing", nil // not ours, or no longer valid: nothing to revoke
	}
	rt, err := l.t.cfg.Authorizations.LookupRefresh(ctx, authorize.Hash(raw))
	switch {
	case errors.Is(err, authorize.ErrNotFound):
		return "nothing", nil
	case err != nil:
		return "", storeUnavailable(err)
	case workload || rt.ClientID != f.get("client_id"):
		return "", errNotYours
	}
	if err := l.t.cfg.Authorizations.RevokeFamily(ctx, rt.Family); err != nil {
		return "", storeUnavailable(err)
	}
	return "refresh_token family " + rt.Family, nil
}

// holds reports whether the caller is the access token's client: the
// public client it names, or the workload it was issued to (its subject)
// or that the trust maps decide is its client.
func (l *lifecycle) holds(ctx context.Context, r *http.Request, caller authenticated, workload bool, f form, v issuer.VerifiedToken) bool {
	if !workload {
		return f.get("client_id") == v.ClientID
	}
	if v.Subject == issuer.WorkloadSubjectPrefix+caller.id.Provider+"/"+caller.id.Subject {
		return true
	}
	d, err := l.t.cfg.Decider.Decide(ctx, caller.id, trustmaps.Request{Audience: v.Audience, GrantType: GrantClientCreds,
		SourceIP: sourceIP(r), MTLS: len(peer(r)) > 0, Time: l.t.cfg.Clock()})
	return err == nil && d.ClientID == v.ClientID
}
