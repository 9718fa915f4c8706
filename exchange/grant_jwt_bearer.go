package exchange

import (
	"context"
	"net/http"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
)

// jwtBearerGrant is the RFC 7523 §2.1 JWT bearer grant: a trusted
// provider's workload JWT as assertion.
type jwtBearerGrant struct{ t *tokenEndpoint }

func (g jwtBearerGrant) serve(ctx context.Context, r *http.Request, f form) (*tokenResponse, *oauthError) {
	t := g.t
	assertion := f.get("assertion")
	if assertion == "" {
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "assertion is required")
	}
	if t.ownIDJAG(assertion) {
		return t.redeemOwnIDJAG(ctx, r, f, assertion)
	}
	att, ok := t.cfg.Attestors[GrantJWTBearer]
	if !ok {
		return nil, fail(http.StatusBadRequest, errUnsupportedGrantType, "the JWT bearer grant is not enabled")
	}
	id, err := att.Attest(ctx, attest.Evidence{Type: GrantJWTBearer, Token: []byte(assertion), PeerCertificates: peer(r)})
	if err != nil {
		return nil, attestError(err, errInvalidGrant) // RFC 7523 §3.1
	}
	if id.Kind == oidc.UserKind {
		if oidc.IsIDJAGType(joseType(assertion)) {
			return t.redeemIDJAG(ctx, r, f, id)
		}
		return nil, fail(http.StatusBadRequest, errInvalidGrant, "a user's assertion gets a token only as an ID-JAG, or through a token exchange with the acting workload and the user's consent")
	}
	return t.grant(ctx, r, f, id, GrantJWTBearer, TokenTypeAccessToken)
}
