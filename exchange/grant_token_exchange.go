package exchange

import (
	"context"
	"net/http"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
)

// tokenExchangeGrant is RFC 8693 token exchange: a workload's platform
// credential (a JWT, a JWT-SVID, the connection's X.509-SVID, a signed AWS
// request) as subject_token; one of our access tokens for delegation; a
// user's token with the acting workload's as actor_token.
type tokenExchangeGrant struct{ t *tokenEndpoint }

func (g tokenExchangeGrant) serve(ctx context.Context, r *http.Request, f form) (*tokenResponse, *oauthError) {
	t := g.t
	subject, subjectType := f.get("subject_token"), f.get("subject_token_type")
	switch {
	case subject == "":
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "subject_token is required")
	case subjectType == "":
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "subject_token_type is required")
	case (f.get("actor_token") == "") != (f.get("actor_token_type") == ""):
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "actor_token and actor_token_type go together")
	}
	issued, oerr := requestedType(f.get("requested_token_type"))
	if oerr != nil {
		return nil, oerr
	}
	if issued == TokenTypeIDJAG && subjectType != TokenTypeIDToken {
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "an ID-JAG is issued for a user's ID token (subject_token_type "+TokenTypeIDToken+")")
	}
	if subjectType == TokenTypeAccessToken {
		return t.delegate(ctx, r, f, issued)
	}
	evType := subjectType
	if subjectType == TokenTypeMTLS {
		if subject != "tls" {
			return nil, fail(http.StatusBadRequest, errInvalidRequest, "with subject_token_type "+TokenTypeMTLS+" the subject_token is the literal tls")
		}
		evType = EvidenceTLSClient
	}
	att, ok := t.cfg.Attestors[evType]
	if !ok {
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "unsupported subject_token_type "+truncate(subjectType))
	}
	id, err := att.Attest(ctx, attest.Evidence{Type: evType, Token: []byte(subject), PeerCertificates: peer(r)})
	if err != nil {
		// RFC 8693 §2.2.2: an invalid or unacceptable subject token is
		// invalid_request, not invalid_grant.
		return nil, attestError(err, errInvalidRequest)
	}
	switch {
	// Only a user provider marked id_jag verifies an ID-JAG (the attestor
	// refuses the type from any other): workload tokens, the common case,
	// are not decoded again.
	case id.Kind == oidc.UserKind && oidc.IsIDJAGType(joseType(subject)):
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "an ID-JAG is redeemed with the JWT bearer grant, not exchanged")
	case issued == TokenTypeIDJAG && id.Kind != oidc.UserKind:
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "an ID-JAG is issued for a user's ID token, not a workload's")
	case issued == TokenTypeIDJAG:
		return t.issueIDJAG(ctx, r, f, id)
	case id.Kind == oidc.UserKind:
		return t.onBehalfOfUser(ctx, r, f, id, issued)
	}
	if f.get("actor_token") != "" {
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "an actor_token goes with a user's subject_token, or with one of our access tokens (delegation)")
	}
	return t.grant(ctx, r, f, id, GrantTokenExchange, issued)
}

func requestedType(rt string) (string, *oauthError) {
	switch rt {
	case "", TokenTypeAccessToken:
		return TokenTypeAccessToken, nil
	case TokenTypeJWT:
		return TokenTypeJWT, nil
	case TokenTypeIDJAG:
		return TokenTypeIDJAG, nil
	}
	return "", fail(http.StatusBadRequest, errInvalidRequest, "requested_token_type must be "+TokenTypeAccessToken+", "+TokenTypeJWT+" or "+TokenTypeIDJAG)
}
